/**
 * A training step on the webgpu backend (lavapipe in CI) reads back once per pass — the flat vector of loss,
 * logits and gradients — with no host sync inside the forward or backward pass, and with our fused kernels
 * it gives the op chains' results in fewer GPU dispatches.
 */
import * as tf from "@tensorflow/tfjs-core";
import { beforeAll, describe, expect, it } from "vitest";
import type { AdapterSet } from "../../common/adapters.js";
import { countBackendWork } from "../../worker/backend_counters.js";
import { imagesToPatches } from "../../worker/model/layers.js";
import { lossAndGrads, type ShardGradients, type Trainables } from "../../worker/model/objective.js";
import { InfLoraVit } from "../../worker/model/vit.js";
import { registerWebgpuKernels, WEBGPU_KERNELS } from "../../worker/webgpu/kernels/index.js";
import { relErr } from "../helpers/rel_err.js";
import { randomArray, randomWeights, TINY } from "../helpers/tiny_vit.js";
import { useWebgpu } from "../helpers/webgpu.js";

const cfg = TINY;
const D = cfg.embedDim;
const r = 3;
const classes = 4;
const count = 3;

describe("training step on webgpu", () => {
  let model: InfLoraVit;
  let BT: tf.Tensor2D[];
  let p: Trainables;
  let patches: Float32Array;
  const targets = Int32Array.from([0, 3, 1]);

  beforeAll(async () => {
    await useWebgpu();
    registerWebgpuKernels();
    model = new InfLoraVit(cfg, randomWeights(cfg, 1));
    const perBlock = (seed: number, n: number) =>
      Array.from({ length: cfg.depth }, (_, i) => randomArray(n, seed + i, 0.5));
    const finished: AdapterSet = {
      rank: r,
      Bk: perBlock(10, r * D),
      Bv: perBlock(10, r * D),
      Ak: perBlock(20, D * r),
      Av: perBlock(30, D * r),
    };
    await model.setFinishedAdapters([finished]);
    BT = perBlock(40, D * r).map((b) => tf.tensor2d(b, [D, r]));
    p = {
      AkT: perBlock(50, r * D).map((a) => tf.tensor2d(a, [r, D])),
      AvT: perBlock(60, r * D).map((a) => tf.tensor2d(a, [r, D])),
      headW: tf.tensor2d(randomArray(classes * D, 70, 0.7), [classes, D]),
      headB: tf.tensor1d(randomArray(classes, 71, 0.3)),
    };
    const images = Float32Array.from(randomArray(count * 3 * cfg.imgSize ** 2, 2, 0.5), (v) => v + 0.5);
    patches = imagesToPatches(images, count, 3, cfg.imgSize, cfg.patchSize);
  });

  const step = () => countBackendWork(() => lossAndGrads(model, patches, count, targets, BT, p));

  const flat = (g: ShardGradients) =>
    Float32Array.from([
      g.lossSum,
      ...g.gradAk.flatMap((a) => [...a]),
      ...g.gradAv.flatMap((a) => [...a]),
      ...g.gradHeadW,
      ...g.gradHeadB,
    ]);

  it("reads back once per training pass, with the fused kernels and without", async () => {
    expect(tf.getBackend()).toBe("webgpu");
    await step(); // compiles the shaders; the live fold is cached from here on
    const fused = await step();
    expect(fused.counts.readbacks).toBe(1);
    expect(fused.counts.dispatches).toBeGreaterThan(0);

    for (const k of WEBGPU_KERNELS) tf.unregisterKernel(k.kernelName, k.backendName);
    try {
      // A new adapter (other tensors) refolds on the op chain.
      const again = { ...p, AkT: p.AkT.map((a) => tf.clone(a)) };
      const chain = await countBackendWork(() => lossAndGrads(model, patches, count, targets, BT, again));
      tf.dispose(again.AkT);
      expect(chain.counts.readbacks).toBe(1);
      expect(chain.value.correct).toBe(fused.value.correct);
      // Same formulas, float32 in other orders (and erf 3e-7 apart): far below the 1e-5 the cpu backend's
      // gradients are held to against autodiff (model_backprop.test.ts).
      expect(relErr(flat(fused.value), flat(chain.value))).toBeLessThan(1e-5);
      // The op chains' LayerNorm, GELU and softmax backward cost several dispatches each where ours cost one.
      const unfusedOnce = await countBackendWork(() => lossAndGrads(model, patches, count, targets, BT, p));
      expect(unfusedOnce.counts.dispatches).toBeGreaterThan(fused.counts.dispatches * 1.3);
    } finally {
      registerWebgpuKernels();
    }
  });
});
