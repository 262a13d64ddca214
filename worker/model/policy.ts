/**
 * How the model maps onto the backend. On wasm only a plain 2-D matMul (no transpose flags, no batch
 * dimension) reaches XNNPACK; batched and flagged matmuls run a scalar loop about ten times slower. So on
 * wasm a pass runs one image at a time (attention becomes per-head 2-D matmuls) and transposes are
 * materialised; every other backend (tensorflow, the OpenBLAS-backed blas backend, cpu) keeps batched
 * matmuls with transpose flags, which they run well and in fewer kernel launches, and takes all heads in
 * one matmul per projection. webgpu (a GPU, or lavapipe) takes a micro-shard in one batched pass, like
 * tfjs-node-gpu, with per-head weights.
 */
import * as tf from "@tensorflow/tfjs-core";
import { numTokens, type VitConfig } from "../../common/vit_config.js";

export interface ComputePolicy {
  /** Each image gets its own forward (and backward) pass; otherwise the whole micro-batch at once. */
  readonly perImage: boolean;
  /**
   * Attention's projections take every head in one matmul ([B·N, D] × [D, D]), the heads then a batch
   * dimension of the score products (attention_joint.ts). Otherwise each head has its own weights and
   * 2-D products and no activation is sliced (attention_per_head.ts): what wasm runs fast. Fixed when the
   * model is built, since it decides the weights' layout.
   */
  readonly jointHeads: boolean;
  /** 2-D matmuls get explicit tf.transpose inputs instead of transpose flags. */
  readonly explicitTransposes: boolean;
  /** GELU's erf and exp through ops wasm vectorises (see fused_ops.ts); its Erf and Exp kernels are scalar. */
  readonly fastGelu: boolean;
  /**
   * Most images one training pass (forward + backward) takes; a micro-shard with more runs in several
   * passes whose gradients are summed in float64. Bounds the saved activations on CPU backends.
   */
  readonly maxTrainImagesPerPass: number;
  /**
   * The backend can read a tensor back synchronously. webgpu cannot (tfjs's readSync there needs a
   * browser canvas), so host-side steps that would (the backend float32 fold of finished adapters) take
   * their host path instead.
   */
  readonly syncReadback: boolean;
}

/**
 * Below this many activations per image ([tokens, D]) one pass per image costs more in per-op overhead
 * (some 20–40 µs a kernel call on wasm) than the batched attention's slow matmuls. Measured on wasm: the
 * fixture-size model (65 × 48) trains 2× faster batched, ViT-Ti/16 (197 × 192) 2.2× faster per image.
 */
export const PER_IMAGE_MIN_ACTIVATIONS = 16_384;

/**
 * Activations ([tokens, D] per image) one training pass may hold on a CPU backend: four ViT-B/16 images.
 * Measured on blas, ViT-B/16, batch 8: passes of 4 images ran at 1.60 img/s with a peak RSS of 1.48 GiB,
 * passes of 8 at 1.54 img/s and 2.08 GiB (PyTorch: 1.51 img/s, 1.85 GiB); a 32-image micro-shard in one
 * pass would need ~6 GiB. GPUs (tfjs-node-gpu) and tfjs-node take a micro-shard in one pass.
 */
export const CPU_PASS_ACTIVATIONS = 4 * 197 * 768;

export function defaultPolicy(cfg: VitConfig): ComputePolicy {
  const backend = tf.getBackend();
  const wasm = backend === "wasm";
  const perImageActivations = numTokens(cfg) * cfg.embedDim;
  const cpu = wasm || backend === "blas" || backend === "cpu";
  return {
    perImage: wasm && perImageActivations >= PER_IMAGE_MIN_ACTIVATIONS,
    // webgpu keeps the per-head layout its fused adapter-fold kernel (worker/webgpu/kernels) was written for.
    jointHeads: !wasm && backend !== "webgpu",
    explicitTransposes: wasm,
    fastGelu: wasm,
    maxTrainImagesPerPass: cpu
      ? Math.max(1, Math.floor(CPU_PASS_ACTIVATIONS / perImageActivations))
      : Number.POSITIVE_INFINITY,
    syncReadback: backend !== "webgpu",
  };
}

/** tf.matMul(a, b, transposeA, transposeB), keeping 2-D products on the wasm fast path when asked to. */
export function matMulT<T extends tf.Tensor>(
  a: T,
  b: T,
  transposeA: boolean,
  transposeB: boolean,
  policy: ComputePolicy,
): T {
  if (policy.explicitTransposes && a.rank === 2 && b.rank === 2 && (transposeA || transposeB)) {
    return tf.matMul(transposeA ? tf.transpose(a) : a, transposeB ? tf.transpose(b) : b) as T;
  }
  return tf.matMul(a, b, transposeA, transposeB) as T;
}
