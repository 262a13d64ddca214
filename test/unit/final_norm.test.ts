/**
 * The fresh final LayerNorm of InfLoRA_CA1 on CIFAR-100 (weight 1, bias 0, eps 1e-5) against the analytic
 * LayerNorm. The model's one block is made an identity (zero output projections), so the class token
 * reaching the final norm is cls_token + pos_embed[0] for every image and its features are known exactly.
 */
import * as tf from "@tensorflow/tfjs-core";
import { beforeAll, describe, expect, it } from "vitest";
import type { VitConfig } from "../../common/vit_config.js";
import { selectBackend } from "../../worker/backend.js";
import { imagesToPatches } from "../../worker/model/layers.js";
import { inferConfig } from "../../worker/model/load_weights.js";
import { lossAndGrads } from "../../worker/model/objective.js";
import { InfLoraVit } from "../../worker/model/vit.js";
import { randomArray, randomWeights, TINY } from "../helpers/tiny_vit.js";

const base: VitConfig = { ...TINY, depth: 1 };
const D = base.embedDim;
const count = 3;

/** Random weights whose block adds nothing, with a class token of small variance (≈1e-6, near eps). */
function identityWeights() {
  const w = randomWeights(base, 4);
  for (const name of ["attn.proj.weight", "attn.proj.bias", "mlp.fc2.weight", "mlp.fc2.bias"])
    w.get(`blocks.0.${name}`)?.data.fill(0);
  const cls = w.get("cls_token")!.data;
  const pos = w.get("pos_embed")!.data;
  for (let j = 0; j < D; j++) {
    cls[j] = 0.3 + 1e-3 * Math.sin(j + 1);
    pos[j] = 1e-3 * Math.cos(3 * j);
  }
  return w;
}

/** (x − mean) / √(var + eps) · γ + β in float64, the biased variance as torch.nn.LayerNorm. */
function layerNorm(x: number[], eps: number, gamma?: ArrayLike<number>, beta?: ArrayLike<number>): number[] {
  const mean = x.reduce((a, b) => a + b) / x.length;
  const variance = x.reduce((a, b) => a + (b - mean) ** 2, 0) / x.length;
  return x.map((v, j) => ((v - mean) / Math.sqrt(variance + eps)) * (gamma?.[j] ?? 1) + (beta?.[j] ?? 0));
}

describe("final LayerNorm", () => {
  beforeAll(async () => {
    await selectBackend("cpu");
  });

  const weights = identityWeights();
  const token = Array.from(
    { length: D },
    (_, j) => weights.get("cls_token")!.data[j] + weights.get("pos_embed")!.data[j],
  );
  const images = randomArray(count * 3 * base.imgSize * base.imgSize, 9, 0.5);
  const patches = imagesToPatches(images, count, 3, base.imgSize, base.patchSize);
  const features = (cfg: VitConfig) => {
    const model = new InfLoraVit(cfg, weights);
    const f = tf.tidy(() => model.features(tf.tensor2d(patches, [count * 4, 48]), count));
    const out = Array.from(f.dataSync());
    f.dispose();
    model.dispose();
    return out;
  };

  it("fresh: weight 1, bias 0, eps 1e-5, whatever the checkpoint's norm holds", () => {
    const want = layerNorm(token, 1e-5);
    const got = features({ ...base, finalNorm: "fresh" });
    for (let n = 0; n < count; n++)
      for (let j = 0; j < D; j++) expect(got[n * D + j]).toBeCloseTo(want[j], 4);
    // At this variance eps matters: the pretrained eps (1e-6) gives other features.
    const other = layerNorm(token, 1e-6);
    expect(Math.max(...want.map((v, j) => Math.abs(v - other[j])))).toBeGreaterThan(0.05);
  });

  it("pretrained (the default): the checkpoint's weight and bias with timm's eps 1e-6", () => {
    const want = layerNorm(token, 1e-6, weights.get("norm.weight")!.data, weights.get("norm.bias")!.data);
    const got = features(base);
    for (let j = 0; j < D; j++) expect(got[j]).toBeCloseTo(want[j], 4);
  });

  it("the training pass uses the fresh norm too", async () => {
    const model = new InfLoraVit({ ...base, finalNorm: "fresh" }, weights);
    const classes = 2;
    const W = randomArray(classes * D, 5, 0.7);
    const b = randomArray(classes, 6, 0.3);
    const targets = Int32Array.of(0, 1, 1);
    const r = 2;
    const BT = [tf.tensor2d(randomArray(D * r, 7, 0.5), [D, r])];
    const p = {
      AkT: [tf.tensor2d(randomArray(r * D, 8, 0.5), [r, D])],
      AvT: [tf.tensor2d(randomArray(r * D, 10, 0.5), [r, D])],
      headW: tf.tensor2d(W, [classes, D]),
      headB: tf.tensor1d(b),
    };
    const out = await lossAndGrads(model, patches, count, targets, BT, p);
    tf.dispose([...BT, ...p.AkT, ...p.AvT, p.headW, p.headB]);
    model.dispose();
    const f = layerNorm(token, 1e-5);
    const z = [0, 1].map((k) => f.reduce((s, v, j) => s + v * W[k * D + j], b[k]));
    const lse = Math.log(Math.exp(z[0]) + Math.exp(z[1]));
    const want = Array.from(targets).reduce((s, t) => s + lse - z[t], 0);
    expect(out.lossSum).toBeCloseTo(want, 4);
  });

  it("is carried from the load overrides into the model config, and only when fresh", () => {
    const tensors = new Map(weights);
    const numHeads = base.numHeads;
    expect(inferConfig(tensors, "w.safetensors", { numHeads, finalNorm: "fresh" }).finalNorm).toBe("fresh");
    expect("finalNorm" in inferConfig(tensors, "w.safetensors", { numHeads, finalNorm: "pretrained" })).toBe(
      false,
    );
    expect("finalNorm" in inferConfig(tensors, "w.safetensors", { numHeads })).toBe(false);
  });
});
