/**
 * Our fused WGSL kernels for tfjs's webgpu backend (contracts: worker/model/fused_kernels.ts). Call
 * registerWebgpuKernels() once the webgpu backend is selected; the model then takes the fused path for
 * every op listed there.
 */
import { getKernel, type KernelConfig, registerKernel } from "@tensorflow/tfjs-core";
import { covarianceConfig } from "./covariance.js";
import { foldAddConfig } from "./fold_add.js";
import { geluConfig } from "./gelu.js";
import { geluGradConfig } from "./gelu_grad.js";
import { layerNormConfig } from "./layer_norm.js";
import { layerNormGradConfig } from "./layer_norm_grad.js";
import { softmaxGradConfig } from "./softmax_grad.js";

export const WEBGPU_KERNELS: readonly KernelConfig[] = [
  layerNormConfig,
  layerNormGradConfig,
  geluConfig,
  geluGradConfig,
  softmaxGradConfig,
  covarianceConfig,
  foldAddConfig,
];

/** Registers every kernel of WEBGPU_KERNELS not yet registered (safe to call again). */
export function registerWebgpuKernels(): void {
  for (const k of WEBGPU_KERNELS) {
    if (!getKernel(k.kernelName, k.backendName)) registerKernel(k);
  }
}
