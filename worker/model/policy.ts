/**
 * How the model maps onto the backend. On wasm only a plain 2-D matMul (no transpose flags, no batch
 * dimension) reaches XNNPACK; batched and flagged matmuls run a scalar loop about ten times slower. So on
 * wasm a pass runs one image at a time (attention becomes per-head 2-D matmuls) and transposes are
 * materialised; every other backend (tensorflow, the OpenBLAS-backed blas backend, cpu) keeps batched
 * matmuls with transpose flags, which they run well and in fewer kernel launches.
 */
import * as tf from "@tensorflow/tfjs-core";
import { numTokens, type VitConfig } from "./vit_config.js";

export interface ComputePolicy {
  /** Each image gets its own forward (and backward) pass; otherwise the whole micro-batch at once. */
  readonly perImage: boolean;
  /** 2-D matmuls get explicit tf.transpose inputs instead of transpose flags. */
  readonly explicitTransposes: boolean;
  /** GELU's erf and exp through ops wasm vectorises (see fused_ops.ts); its Erf and Exp kernels are scalar. */
  readonly fastGelu: boolean;
}

/**
 * Below this many activations per image ([tokens, D]) one pass per image costs more in per-op overhead
 * (some 20–40 µs a kernel call on wasm) than the batched attention's slow matmuls. Measured on wasm: the
 * fixture-size model (65 × 48) trains 2× faster batched, ViT-Ti/16 (197 × 192) 2.2× faster per image.
 */
export const PER_IMAGE_MIN_ACTIVATIONS = 16_384;

export function defaultPolicy(cfg: VitConfig): ComputePolicy {
  const wasm = tf.getBackend() === "wasm";
  return {
    perImage: wasm && numTokens(cfg) * cfg.embedDim >= PER_IMAGE_MIN_ACTIVATIONS,
    explicitTransposes: wasm,
    fastGelu: wasm,
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
