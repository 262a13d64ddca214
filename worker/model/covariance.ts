/**
 * The covariance pass's per-block sum over tokens, xᵀx for a block's attention input x [T, D]: the
 * backend's fused kernel where it has one (fused_kernels.ts), else a transposed matmul.
 */
import * as tf from "@tensorflow/tfjs-core";
import { FUSED_KERNELS, hasFusedKernel, runFusedKernel } from "./fused_kernels.js";

export function covarianceSum(x: tf.Tensor2D): tf.Tensor2D {
  if (hasFusedKernel(FUSED_KERNELS.covariance)) return runFusedKernel(FUSED_KERNELS.covariance, { x });
  return tf.matMul(tf.transpose(x) as tf.Tensor2D, x);
}
