/**
 * The hand-written gradients of LayerNorm, GELU and the frozen linear layer against tfjs's autodiff of
 * the plain formulations, on the cpu backend; and the host-side weight preparation.
 */
import * as tf from "@tensorflow/tfjs-core";
import { beforeAll, describe, expect, it } from "vitest";
import { transpose2d } from "../../common/permute.js";
import { selectBackend } from "../../worker/backend.js";
import { erfRational, geluBackward, geluForward } from "../../worker/model/fused_ops.js";
import { columnBlock } from "../../worker/model/head_weights.js";
import { FrozenLinear, gelu, layerNorm } from "../../worker/model/layers.js";
import { relErr } from "../helpers/rel_err.js";
import { randomArray } from "../helpers/tiny_vit.js";

const plainLayerNorm = (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor, eps: number) => {
  const centered = tf.sub(x, tf.mean(x, -1, true));
  const variance = tf.mean(tf.square(centered), -1, true);
  return tf.add(tf.mul(tf.div(centered, tf.sqrt(tf.add(variance, eps))), g), b);
};
const plainGelu = (x: tf.Tensor) => tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));

/** erf in float64: its Maclaurin series below 2.5, the continued fraction of erfc above. */
function erf64(x: number): number {
  const ax = Math.abs(x);
  if (ax < 2.5) {
    let sum = x;
    let term = x;
    for (let n = 1; Math.abs(term) > 1e-17 * Math.abs(sum); n++) {
      term *= (-x * x) / n;
      sum += term / (2 * n + 1);
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  let frac = ax; // ax + (1/2)/(ax + 1/(ax + (3/2)/(ax + …))), evaluated from the tail
  for (let i = 60; i >= 1; i--) frac = ax + i / 2 / frac;
  return Math.sign(x) * (1 - Math.exp(-ax * ax) / Math.sqrt(Math.PI) / frac);
}

/** Values and gradients of sum(f(inputs) ⊙ weights) for each input. */
function valueAndGrads(f: (...xs: tf.Tensor[]) => tf.Tensor, inputs: tf.Tensor[], seed: number) {
  return tf.tidy(() => {
    const y = f(...inputs);
    const w = tf.tensor(randomArray(y.size, seed), y.shape);
    const { grads } = tf.valueAndGrads((...xs: tf.Tensor[]) => tf.sum(tf.mul(f(...xs), w)) as tf.Scalar)(
      inputs,
    );
    return { y: y.dataSync(), grads: grads.map((g) => g.dataSync()) };
  });
}

describe("fused ops", () => {
  beforeAll(async () => {
    await selectBackend("cpu");
  });

  for (const eps of [1e-6, 1e-2]) {
    it(`layerNorm matches autodiff of the plain formulation for x, γ and β (eps ${eps})`, () => {
      const rows = 7;
      const D = 16;
      const inputs = [
        tf.tensor2d(
          randomArray(rows * D, 1, 3).map((v, i) => v + (i % D) * 0.1),
          [rows, D],
        ),
        tf.tensor1d(randomArray(D, 2, 0.5).map((v) => v + 1)),
        tf.tensor1d(randomArray(D, 3, 0.5)),
      ];
      const ours = valueAndGrads(
        (x, g, b) => layerNorm(x as tf.Tensor2D, g as tf.Tensor1D, b as tf.Tensor1D, eps),
        inputs,
        4,
      );
      const plain = valueAndGrads((x, g, b) => plainLayerNorm(x, g, b, eps), inputs, 4);
      expect(relErr(ours.y, plain.y)).toBeLessThan(1e-6);
      for (let i = 0; i < 3; i++)
        expect(relErr(ours.grads[i], plain.grads[i]), `input ${i}`).toBeLessThan(1e-5);
      tf.dispose(inputs);
    });
  }

  it("erfRational stays within 5e-7 of erf everywhere", () => {
    const xs = Float32Array.from({ length: 40_001 }, (_, i) => -10 + i * 5e-4);
    const got = tf.tidy(() => erfRational(tf.tensor1d(xs)).dataSync());
    let worst = 0;
    for (let i = 0; i < xs.length; i++) worst = Math.max(worst, Math.abs(got[i] - erf64(xs[i])));
    expect(worst).toBeLessThan(5e-7);
    expect(erf64(0.5)).toBeCloseTo(0.5204998778130465, 14);
    expect(erf64(3)).toBeCloseTo(0.9999779095030014, 14);
  });

  it("gelu matches autodiff of the plain formulation", () => {
    const x = tf.tensor2d(randomArray(6 * 40, 5, 6), [6, 40]);
    const ours = valueAndGrads((t) => gelu(t), [x], 6);
    const plain = valueAndGrads(plainGelu, [x], 6);
    expect(relErr(ours.y, plain.y)).toBeLessThan(1e-6);
    expect(relErr(ours.grads[0], plain.grads[0])).toBeLessThan(1e-5);
    x.dispose();
  });

  for (const fast of [false, true]) {
    it(`geluBackward (fast ${fast}) matches autodiff, including far tails`, () => {
      const values = [...randomArray(200, 7, 5), -30, -12, -6, -1e-4, 0, 1e-4, 6, 12, 30];
      const x = tf.tensor1d(values);
      const dy = tf.tensor1d(randomArray(values.length, 8, 1));
      const ours = tf.tidy(() => geluBackward(dy, x, geluForward(x, fast).cdf, fast).dataSync());
      const plain = tf.tidy(() =>
        tf
          .grad((t: tf.Tensor) => tf.sum(tf.mul(plainGelu(t), dy)))(x)
          .dataSync(),
      );
      expect(relErr(ours, plain)).toBeLessThan(1e-6);
      tf.dispose([x, dy]);
    });
  }

  it("FrozenLinear: both constructors agree, with or without Wᵀ kept, and its gradient is dy·W", () => {
    const [out, inp] = [5, 9];
    const w = randomArray(out * inp, 9);
    const b = randomArray(out, 10);
    const host = FrozenLinear.fromHost(w, b, out, inp, true);
    const device = new FrozenLinear(tf.tensor2d(w, [out, inp]), tf.tensor1d(b));
    const single = FrozenLinear.fromHost(w, b, out, inp, false);
    expect(single.wt).toBeNull();
    expect(Array.from(host.wt!.dataSync())).toEqual(Array.from(device.wt!.dataSync()));
    const x = tf.tensor2d(randomArray(3 * inp, 11), [3, inp]);
    const plain = valueAndGrads(
      (t) => tf.add(tf.matMul(t, tf.tensor2d(w, [out, inp]), false, true), tf.tensor1d(b)),
      [x],
      12,
    );
    for (const layer of [host, single]) {
      const ours = valueAndGrads((t) => layer.apply(t as tf.Tensor2D), [x], 12);
      expect(relErr(ours.y, plain.y)).toBeLessThan(1e-6);
      expect(relErr(ours.grads[0], plain.grads[0])).toBeLessThan(1e-6);
    }
    tf.dispose([x]);
    host.dispose();
    device.dispose();
    single.dispose();
  });
});

describe("host weight preparation", () => {
  it("transposes and cuts column blocks", () => {
    const a = Float32Array.from({ length: 12 }, (_, i) => i); // [3, 4]
    expect(Array.from(transpose2d(a, 3, 4))).toEqual([0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
    expect(Array.from(columnBlock(a, 3, 4, 1, 2))).toEqual([1, 2, 5, 6, 9, 10]);
  });

  it("transposes large matrices tile by tile", () => {
    const [rows, cols] = [70, 45];
    const a = randomArray(rows * cols, 50);
    const t = transpose2d(a, rows, cols);
    for (let i = 0; i < rows; i++)
      for (let j = 0; j < cols; j++) expect(t[j * rows + i]).toBe(a[i * cols + j]);
  });
});
