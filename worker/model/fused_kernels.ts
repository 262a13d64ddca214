/**
 * Fused kernels a backend may register under our own names (webgpu: worker/webgpu/kernels/; blas, all but
 * covariance and foldAdd: worker/blas_fused.ts). The model asks here, at one dispatch point per op, whether
 * the current backend has the kernel; where it does not (wasm, cpu), the model runs its tfjs op chain.
 * Each name's contract (inputs, attributes, result) is stated below and checked against the op chain in
 * test/unit/webgpu_kernels.test.ts and test/unit/native_backend.test.ts.
 */
import * as tf from "@tensorflow/tfjs-core";

export const FUSED_KERNELS = {
  /** {x [R, D], gamma [D], beta [D]}, {eps} → LayerNorm(x) [R, D] (biased variance). */
  layerNorm: "InfloraLayerNorm",
  /** {dy [R, D], x [R, D], gamma [D]}, {eps} → dL/dx [R, D], the statistics recomputed from x. */
  layerNormGrad: "InfloraLayerNormGrad",
  /** {x} → exact GELU x·Φ(x). */
  gelu: "InfloraGelu",
  /** {dy, x} → dy·(Φ(x) + x·φ(x)). */
  geluGrad: "InfloraGeluGrad",
  /** {dp, p} (softmax probabilities, rows on the last axis) → p ⊙ (dp − Σ_last dp ⊙ p). */
  softmaxGrad: "InfloraSoftmaxGrad",
  /** {x [T, D]} → xᵀx [D, D], the sum over tokens of the covariance pass. */
  covariance: "InfloraCovariance",
  /**
   * {w, aT [r, Da], bT [Db, r]}, {rowOffset, transposed} → w + A_h B with A_h = rows rowOffset… of aTᵀ and
   * B = bTᵀ (w [dh, Db]); transposed: w + (A_h B)ᵀ (w [Db, dh]). The live adapter's fold, one head at a time.
   */
  foldAdd: "InfloraFoldAdd",
} as const;

export type FusedKernelName = (typeof FUSED_KERNELS)[keyof typeof FUSED_KERNELS];

/** Whether the current backend registered `name`. */
export function hasFusedKernel(name: FusedKernelName): boolean {
  return tf.getKernel(name, tf.getBackend()) !== undefined;
}

export function runFusedKernel<T extends tf.Tensor>(
  name: FusedKernelName,
  inputs: Record<string, tf.Tensor>,
  attrs: Record<string, number | boolean> = {},
): T {
  return tf.engine().runKernel(name, inputs as tf.NamedTensorMap, attrs as tf.NamedAttrMap) as T;
}
