/**
 * Starts a step-benchmark child's backend through the worker's selection (worker/backend.ts), which also
 * registers our fused WGSL kernels on webgpu. `fusedKernels: false` unregisters them again, for the
 * before/after dispatch counts.
 */
import * as tf from "@tensorflow/tfjs-core";
import { selectBackend } from "../worker/backend.js";
import { WEBGPU_KERNELS } from "../worker/webgpu/kernels/index.js";

export async function startBenchBackend(
  name: string,
  fusedKernels: boolean,
): Promise<{ tfBackend: string; device: string }> {
  const info = await selectBackend(name);
  if (!fusedKernels) {
    for (const k of WEBGPU_KERNELS) {
      if (tf.getKernel(k.kernelName, k.backendName)) tf.unregisterKernel(k.kernelName, k.backendName);
    }
  }
  return { tfBackend: info.tfBackend, device: info.device };
}
