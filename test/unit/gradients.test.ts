/**
 * The gradients the worker returns for A (k and v) and the head equal central finite differences of the
 * summed cross-entropy, computed by re-running the forward pass with perturbed parameters.
 */
import * as tf from "@tensorflow/tfjs-core";
import { beforeAll, describe, expect, it } from "vitest";
import { selectBackend } from "../../worker/backend.js";
import { imagesToPatches } from "../../worker/model/layers.js";
import { headLogits, lossAndGrads, type Trainables } from "../../worker/model/objective.js";
import { InfLoraVit } from "../../worker/model/vit.js";
import { randomArray, randomWeights, TINY } from "../helpers/tiny_vit.js";

const cfg = TINY;
const D = cfg.embedDim;
const r = 3;
const classes = 4;
const count = 5;

describe("training gradients", () => {
  beforeAll(async () => {
    await selectBackend("cpu");
  });

  it("match central finite differences for A_k, A_v and the head", async () => {
    const model = new InfLoraVit(cfg, randomWeights(cfg, 1));
    const images = randomArray(count * 3 * cfg.imgSize * cfg.imgSize, 2, 0.5).map((v) => v + 0.5);
    const patches = imagesToPatches(images, count, 3, cfg.imgSize, cfg.patchSize);
    const targets = Int32Array.from([0, 3, 1, 2, 3]);
    const host = {
      B: Array.from({ length: cfg.depth }, (_, i) => randomArray(r * D, 10 + i, 0.6)),
      Ak: Array.from({ length: cfg.depth }, (_, i) => randomArray(D * r, 20 + i, 0.5)),
      Av: Array.from({ length: cfg.depth }, (_, i) => randomArray(D * r, 30 + i, 0.5)),
      W: randomArray(classes * D, 40, 0.7),
      b: randomArray(classes, 41, 0.3),
    };
    const BT = host.B.map((b) => tf.tidy(() => tf.transpose(tf.tensor2d(b, [r, D])) as tf.Tensor2D));
    const trainables = (): Trainables => ({
      AkT: host.Ak.map((a) => tf.tidy(() => tf.transpose(tf.tensor2d(a, [D, r])) as tf.Tensor2D)),
      AvT: host.Av.map((a) => tf.tidy(() => tf.transpose(tf.tensor2d(a, [D, r])) as tf.Tensor2D)),
      headW: tf.tensor2d(host.W, [classes, D]),
      headB: tf.tensor1d(host.b),
    });
    const dispose = (p: Trainables) => tf.dispose([...p.AkT, ...p.AvT, p.headW, p.headB]);
    // The loss as plain cross-entropy from logits computed in float32, summed in float64.
    const loss = (): number => {
      const p = trainables();
      const logits = tf.tidy(() => {
        const x = tf.tensor2d(patches, [count * 4, 48]);
        return headLogits(model, x, count, BT, p);
      });
      const L = logits.dataSync();
      logits.dispose();
      dispose(p);
      let sum = 0;
      for (let n = 0; n < count; n++) {
        const row = Array.from(L.subarray(n * classes, (n + 1) * classes));
        const m = Math.max(...row);
        const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
        sum += lse - row[targets[n]];
      }
      return sum;
    };
    const p = trainables();
    const out = await lossAndGrads(model, patches, count, targets, BT, p);
    dispose(p);
    expect(out.lossSum).toBeCloseTo(loss(), 4);

    const h = 1e-2;
    const check = (param: Float32Array, grad: Float32Array, label: string) => {
      const scale = Math.max(...Array.from(grad, Math.abs));
      expect(scale, `${label}: gradient is not identically zero`).toBeGreaterThan(1e-4);
      for (let k = 0; k < param.length; k += Math.max(1, Math.floor(param.length / 7))) {
        const keep = param[k];
        param[k] = keep + h;
        const up = loss();
        param[k] = keep - h;
        const down = loss();
        param[k] = keep;
        const fd = (up - down) / (2 * h);
        expect(Math.abs(fd - grad[k]), `${label}[${k}]: fd ${fd} vs autodiff ${grad[k]}`).toBeLessThan(
          2e-2 * scale + 1e-4,
        );
      }
    };
    for (let i = 0; i < cfg.depth; i++) {
      check(host.Ak[i], out.gradAk[i], `A_k block ${i}`);
      check(host.Av[i], out.gradAv[i], `A_v block ${i}`);
    }
    check(host.W, out.gradHeadW, "head weight");
    check(host.b, out.gradHeadB, "head bias");
    tf.dispose(BT);
    model.dispose();
  });
});
