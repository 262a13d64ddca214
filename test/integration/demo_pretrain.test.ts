/**
 * The demo backbone's full-model pretraining: every tensor trains, the result is a valid timm-layout ViT
 * (plus its head), a learnable problem is learnt, and no tfjs tensor outlives the loop.
 */
import * as tf from "@tensorflow/tfjs-core";
import { beforeAll, describe, expect, it } from "vitest";
import type { VitConfig } from "../../common/vit_config.js";
import { initialWeights, pretrainVit } from "../../demo/pretrain.js";
import { selectBackend } from "../../worker/backend.js";
import { validateWeights } from "../../worker/model/load_weights.js";
import { mulberry32 } from "../helpers/tiny_vit.js";

const cfg: VitConfig = {
  imgSize: 8,
  patchSize: 4,
  inChans: 3,
  embedDim: 16,
  depth: 2,
  numHeads: 2,
  mlpHidden: 32,
};

/** Two classes: vertical or horizontal stripes (a direction inside every patch, which LayerNorm keeps), plus noise. */
function toyImages(n: number, seed: number): { images: Float32Array; labels: Int32Array } {
  const rnd = mulberry32(seed);
  const S = cfg.imgSize;
  const images = new Float32Array(n * 3 * S * S);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    labels[i] = i % 2;
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < S; y++)
        for (let x = 0; x < S; x++) {
          const on = labels[i] === 0 ? x % 2 === 0 : y % 2 === 0;
          images[((i * 3 + c) * S + y) * S + x] = (on ? 0.8 : 0.2) + 0.2 * (rnd() - 0.5);
        }
  }
  return { images, labels };
}

beforeAll(async () => {
  await selectBackend();
});

describe("pretrainVit", () => {
  it("learns a separable toy problem, changes every tensor, and leaves no tensors behind", async () => {
    const data = toyImages(64, 1);
    const before = tf.memory().numTensors;
    const losses: number[] = [];
    const accuracies: number[] = [];
    const weights = await pretrainVit(data, {
      cfg,
      classes: 2,
      epochs: 6,
      batchSize: 16,
      lr: 3e-3,
      weightDecay: 1e-4,
      labelSmoothing: 0,
      seed: 3,
      flip: false,
      onStep: (s) => losses.push(s.loss),
      onEpoch: (e) => accuracies.push(e.trainAccuracy),
    });
    expect(tf.memory().numTensors).toBe(before);
    expect(losses.length).toBe(6 * 4);
    expect(accuracies[accuracies.length - 1]).toBe(100);
    expect(losses[losses.length - 1]).toBeLessThan(losses[0] / 2);

    const initial = initialWeights(cfg, 2, 3);
    const unused = validateWeights(weights, cfg, "pretrained");
    expect(unused).toEqual(["head.bias", "head.weight"]);
    expect(weights.get("head.weight")!.shape).toEqual([2, 16]);
    expect(weights.get("patch_embed.proj.weight")!.shape).toEqual([16, 3, 4, 4]);
    for (const [name, t] of weights) {
      const t0 = initial.get(name)!;
      const moved = t.data.some((v, i) => v !== t0.data[i]);
      expect({ name, moved }).toEqual({ name, moved: true });
    }
  });

  it("is deterministic for a seed", async () => {
    const data = toyImages(32, 2);
    const opts = {
      cfg,
      classes: 2,
      epochs: 1,
      batchSize: 8,
      lr: 1e-3,
      weightDecay: 0,
      labelSmoothing: 0.1,
      seed: 5,
      flip: true,
    };
    const a = await pretrainVit(data, opts);
    const b = await pretrainVit(data, opts);
    for (const [name, t] of a) expect(Array.from(b.get(name)!.data)).toEqual(Array.from(t.data));
  });
});
