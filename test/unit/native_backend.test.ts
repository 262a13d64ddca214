/**
 * The blas backend (cpu backend + native kernels) gives the cpu backend's results up to float32
 * rounding: every kernel it replaces, on the broadcasting, transpose and batch patterns the model uses,
 * and a whole training step of a small ViT. Also: recycled output buffers never overwrite an array a
 * caller got from dataSync(), and no tensors leak. Needs `npm run build:native`; without the addon these
 * tests fail and say how to build it.
 */
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import "@tensorflow/tfjs";
import { beforeEach, describe, expect, it } from "vitest";
import { requireNative } from "../../native/index.js";
import { BLAS_BACKEND, registerBlasBackend } from "../../worker/blas_backend.js";
import {
  geluBackward,
  geluForward,
  layerNormBackward,
  layerNormForward,
  softmaxBackward,
} from "../../worker/model/fused_ops.js";
import { imagesToPatches } from "../../worker/model/layers.js";
import { lossAndGrads, type Trainables } from "../../worker/model/objective.js";
import { InfLoraVit } from "../../worker/model/vit.js";
import { mulberry32, randomArray, randomWeights, TINY } from "../helpers/tiny_vit.js";

// Per test, so that without the addon every test fails with the build instructions (none is skipped).
beforeEach(() => {
  tf.env().set("PROD", true);
  registerBlasBackend(requireNative());
});

function random(shape: number[], seed: number, lo = -2, hi = 2): tf.Tensor {
  const rnd = mulberry32(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(
    Float32Array.from({ length: n }, () => lo + (hi - lo) * rnd()),
    shape,
  );
}

/** f's result on the cpu backend and on the blas backend (inputs built afresh on each). */
async function onBoth(f: () => tf.Tensor): Promise<{ cpu: tf.Tensor; blas: tf.Tensor }> {
  await tf.setBackend("cpu");
  const cpu = tf.tidy(f);
  const cpuCopy = tf.tensor(cpu.dataSync().slice(), cpu.shape, cpu.dtype);
  cpu.dispose();
  await tf.setBackend(BLAS_BACKEND);
  const blas = tf.tidy(f);
  return { cpu: cpuCopy, blas };
}

async function expectSame(f: () => tf.Tensor, rel = 2e-6, abs = 1e-6): Promise<void> {
  const { cpu, blas } = await onBoth(f);
  expect(blas.shape).toEqual(cpu.shape);
  expect(blas.dtype).toBe(cpu.dtype);
  const a = cpu.dataSync();
  const b = blas.dataSync();
  for (let i = 0; i < a.length; i++) {
    const ok = Object.is(a[i], b[i]) || Math.abs(a[i] - b[i]) <= abs + rel * Math.abs(a[i]);
    if (!ok) expect.fail(`element ${i}: cpu ${a[i]} vs blas ${b[i]}`);
  }
  tf.dispose([cpu, blas]);
}

describe("blas backend kernels equal the cpu backend's", () => {
  it("matMul with every transpose flag, batches and batch broadcasting", async () => {
    for (const ta of [false, true]) {
      for (const tb of [false, true]) {
        const a = (s: number) => random(ta ? [7, 5] : [5, 7], s);
        const b = (s: number) => random(tb ? [3, 7] : [7, 3], s);
        await expectSame(() => tf.matMul(a(1), b(2), ta, tb), 1e-5, 1e-5);
        await expectSame(
          () =>
            tf.matMul(random(ta ? [2, 4, 7, 5] : [2, 4, 5, 7], 3), random(tb ? [3, 7] : [7, 3], 4), ta, tb),
          1e-5,
          1e-5,
        );
        await expectSame(
          () => tf.matMul(random(ta ? [7, 5] : [5, 7], 5), random(tb ? [6, 3, 7] : [6, 7, 3], 6), ta, tb),
          1e-5,
          1e-5,
        );
      }
    }
  });

  it("fused matMul with bias and activations", async () => {
    for (const activation of ["linear", "relu", "relu6", "elu", "sigmoid", "leakyrelu"] as const) {
      await expectSame(
        () =>
          tf.fused.matMul({
            a: random([6, 4], 1),
            b: random([5, 4], 2),
            transposeB: true,
            bias: random([5], 3),
            activation,
            leakyreluAlpha: 0.1,
          }),
        1e-5,
        1e-5,
      );
    }
    await expectSame(() =>
      tf.fused.matMul({
        a: random([6, 4], 1),
        b: random([4, 5], 2),
        activation: "prelu",
        preluActivationWeights: random([5], 4),
      }),
    );
  });

  it("binary ops under every broadcasting pattern", async () => {
    const pairs: [number[], number[]][] = [
      [
        [4, 5],
        [4, 5],
      ],
      [[4, 5], [5]],
      [
        [4, 5],
        [4, 1],
      ],
      [
        [4, 1],
        [4, 5],
      ],
      [
        [2, 1, 5],
        [1, 3, 1],
      ],
      [[3, 4, 5], []],
      [[], [3, 2]],
      [
        [2, 3, 4, 5],
        [3, 1, 5],
      ],
      [[0, 3], [3]],
    ];
    const ops = [tf.add, tf.sub, tf.mul, tf.div, tf.squaredDifference];
    for (const [sa, sb] of pairs) {
      for (const op of ops) await expectSame(() => op(random(sa, 1), random(sb, 2, 0.5, 2)));
    }
  });

  it("unary ops, including exp and erf over their whole range and non-finite input", async () => {
    const specials = tf.tensor1d([
      0,
      -0,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      1e-30,
    ]);
    const wide = () => tf.concat([random([1000], 9, -110, 90), specials.clone()]);
    for (const op of [tf.neg, tf.square, tf.abs, tf.reciprocal]) await expectSame(() => op(wide()));
    for (const op of [tf.sqrt, tf.rsqrt]) await expectSame(() => op(random([1000], 3, 0, 100)));
    // exp: within 2 float32 ulp of the correctly rounded value the cpu backend stores.
    await expectSame(() => tf.exp(wide()), 3e-7, 1e-44);
    // erf: tfjs's own polynomial, evaluated in float32 instead of float64.
    await expectSame(() => tf.erf(wide()), 0, 5e-7);
    await expectSame(() => tf.erf(random([4000], 4, -6, 6)), 0, 5e-7);
  });

  it("softmax, reductions, transposes", async () => {
    await expectSame(() => tf.softmax(random([3, 4, 7], 1, -30, 30)), 1e-6, 1e-7);
    await expectSame(() => tf.softmax(tf.tensor2d([[1, Number.NaN, 2]])));
    for (const [shape, axis] of [
      [[6, 7], -1],
      [[6, 7], 0],
      [
        [2, 3, 4],
        [1, 2],
      ],
      [[2, 3, 4], 1],
      [
        [2, 3, 4],
        [0, 1, 2],
      ],
    ] as [number[], number | number[]][]) {
      for (const keepDims of [false, true]) {
        await expectSame(() => tf.sum(random(shape, 2), axis, keepDims), 1e-6, 1e-6);
        await expectSame(() => tf.mean(random(shape, 3), axis, keepDims), 1e-6, 1e-6);
        await expectSame(() => tf.max(random(shape, 4), axis, keepDims), 0, 0);
        await expectSame(() => tf.min(random(shape, 5), axis, keepDims), 0, 0);
      }
    }
    await expectSame(() =>
      tf.max(
        tf.tensor2d([
          [1, Number.NaN],
          [2, 3],
        ]),
        1,
      ),
    );
    for (const perm of [
      [1, 0],
      [0, 2, 1, 3],
      [3, 2, 1, 0],
      [2, 0, 3, 1],
    ]) {
      const shape = perm.length === 2 ? [37, 45] : [2, 3, 4, 5];
      await expectSame(() => tf.transpose(random(shape, 6), perm), 0, 0);
    }
    await expectSame(() => tf.transpose(random([1, 70, 1, 3], 7), [2, 1, 0, 3]), 0, 0);
  });

  it("slice, pad, concat and addN", async () => {
    await expectSame(() => tf.slice(random([4, 65, 8], 1), [0, 0, 0], [4, 1, 8]), 0, 0);
    await expectSame(() => tf.slice(random([4, 65, 8], 2), [1, 3, 2], [2, -1, 5]), 0, 0);
    await expectSame(
      () =>
        tf.pad(random([4, 1, 8], 3), [
          [0, 0],
          [0, 64],
          [0, 0],
        ]),
      0,
      0,
    );
    await expectSame(
      () =>
        tf.pad(
          random([3, 5], 4),
          [
            [1, 2],
            [3, 0],
          ],
          2.5,
        ),
      0,
      0,
    );
    await expectSame(() => tf.concat([random([4, 1, 8], 5), random([4, 64, 8], 6)], 1), 0, 0);
    await expectSame(() => tf.concat([random([2, 3], 7), random([0, 3], 8), random([4, 3], 9)], 0), 0, 0);
    await expectSame(() =>
      tf.addN([random([5, 6], 1), random([5, 6], 2), random([5, 6], 3), random([5, 6], 4)]),
    );
  });

  it("int32 and other dtypes take the cpu kernels", async () => {
    await expectSame(() => tf.add(tf.tensor1d([1, 2, 3], "int32"), tf.tensor1d([4, 5, 6], "int32")), 0, 0);
    await expectSame(() =>
      tf.matMul(tf.tensor2d([[1, 2]], [1, 2], "int32"), tf.tensor2d([[3], [4]], [2, 1], "int32")),
    );
    await expectSame(() => tf.transpose(tf.tensor2d([[1, 2, 3]], [1, 3], "int32")), 0, 0);
  });
});

describe("blas backend buffer recycling", () => {
  it("never overwrites an array handed out by dataSync, and leaks no tensors", async () => {
    await tf.setBackend(BLAS_BACKEND);
    const before = tf.memory().numTensors;
    const y = tf.tidy(() => tf.add(random([1000], 1), random([1000], 2)));
    const seen = y.dataSync();
    const copy = seen.slice();
    y.dispose();
    for (let i = 0; i < 20; i++) tf.tidy(() => tf.mul(tf.add(random([1000], 3 + i), 1), 2).dataSync());
    expect(seen).toEqual(copy);
    // A view (slice) of a recycled buffer keeps it alive while the view lives.
    const whole = tf.tidy(() => tf.add(random([8, 100], 4), 0));
    const part = tf.slice(whole, [0, 0], [1, 100]);
    const partCopy = part.dataSync().slice();
    whole.dispose();
    for (let i = 0; i < 10; i++) tf.tidy(() => tf.add(random([8, 100], 5 + i), 1).dataSync());
    expect(part.dataSync()).toEqual(partCopy);
    part.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe("the model's fused kernels on blas equal the cpu backend's op chains", () => {
  // The model's own entry points: on cpu they run the op chain, on blas the addon's fused kernel.
  const rows = 2 * 197;
  const D = 192;
  it("LayerNorm and its input gradient", async () => {
    const make = () => ({
      x: tf.add(random([rows, D], 1, -3, 3), random([rows, 1], 2, -5, 5)) as tf.Tensor2D,
      g: random([D], 3, 0.5, 1.5) as tf.Tensor1D,
      b: random([D], 4) as tf.Tensor1D,
      dy: random([rows, D], 5) as tf.Tensor2D,
    });
    await expectSame(() => {
      const { x, g, b } = make();
      return layerNormForward(x, g, b).y;
    });
    await expectSame(
      () => {
        const { x, g, b, dy } = make();
        return layerNormBackward(dy, g, layerNormForward(x, g, b, 1e-5).saved);
      },
      1e-5,
      1e-5,
    );
  });

  it("exact GELU and its gradient, over a range past erf's saturation", async () => {
    await expectSame(() => geluForward(random([rows, 4 * D], 6, -9, 9)).y);
    await expectSame(() => {
      const x = random([rows, 4 * D], 6, -9, 9);
      return geluBackward(random([rows, 4 * D], 7), x, geluForward(x).cdf, false);
    });
  });

  it("softmax's backward", async () => {
    await expectSame(() => {
      const p = tf.softmax(random([2, 3, 197, 197], 8, -6, 6));
      return softmaxBackward(random([2, 3, 197, 197], 9), p);
    });
  });

  it("refuses a non-float32 input by name", async () => {
    await tf.setBackend(BLAS_BACKEND);
    expect(() => tf.tidy(() => geluForward(tf.ones([4], "int32")))).toThrow(/InfloraGelu: x is int32/);
  });
});

describe("a training step on the blas backend", () => {
  it("gives the cpu backend's loss and gradients", async () => {
    const cfg = TINY;
    const D = cfg.embedDim;
    const r = 3;
    const count = 5;
    const images = randomArray(count * 3 * cfg.imgSize * cfg.imgSize, 2, 0.5).map((v) => v + 0.5);
    const patches = imagesToPatches(images, count, 3, cfg.imgSize, cfg.patchSize);
    const targets = Int32Array.from([0, 3, 1, 2, 3]);
    const run = async (backend: string) => {
      await tf.setBackend(backend);
      const model = new InfLoraVit(cfg, randomWeights(cfg, 1));
      const BT = Array.from({ length: cfg.depth }, (_, i) =>
        tf.tensor2d(randomArray(D * r, 10 + i, 0.6), [D, r]),
      );
      const p: Trainables = {
        AkT: Array.from({ length: cfg.depth }, (_, i) =>
          tf.tensor2d(randomArray(r * D, 20 + i, 0.5), [r, D]),
        ),
        AvT: Array.from({ length: cfg.depth }, (_, i) =>
          tf.tensor2d(randomArray(r * D, 30 + i, 0.5), [r, D]),
        ),
        headW: tf.tensor2d(randomArray(4 * D, 40, 0.7), [4, D]),
        headB: tf.tensor1d(randomArray(4, 41, 0.3)),
      };
      // The first step may build lasting per-model tensors; later steps must not add any.
      const out = await lossAndGrads(model, patches, count, targets, BT, p);
      const before = tf.memory().numTensors;
      const again = await lossAndGrads(model, patches, count, targets, BT, p);
      expect(tf.memory().numTensors).toBe(before);
      expect(again.lossSum).toBe(out.lossSum);
      tf.dispose([...BT, ...p.AkT, ...p.AvT, p.headW, p.headB]);
      model.dispose();
      return out;
    };
    const cpu = await run("cpu");
    const blas = await run(BLAS_BACKEND);
    expect(blas.lossSum).toBeCloseTo(cpu.lossSum, 4);
    const close = (a: Float32Array, b: Float32Array) => {
      let scale = 0;
      for (const v of a) scale = Math.max(scale, Math.abs(v));
      for (let i = 0; i < a.length; i++) expect(Math.abs(a[i] - b[i])).toBeLessThan(1e-4 * scale + 1e-7);
    };
    for (let i = 0; i < cfg.depth; i++) {
      close(cpu.gradAk[i], blas.gradAk[i]);
      close(cpu.gradAv[i], blas.gradAv[i]);
    }
    close(cpu.gradHeadW, blas.gradHeadW);
    close(cpu.gradHeadB, blas.gradHeadB);
  });
});
