/**
 * Starts a step-benchmark child's backend: the worker's selection (worker/backend.ts) for every name it
 * knows. `webgpu` is started here through worker/webgpu_device.ts until the worker's ladder carries it
 * (issue #18); then this falls through to selectBackend. `fusedKernels: false` unregisters our fused WGSL
 * kernels, for the before/after dispatch counts.
 */
import * as tf from "@tensorflow/tfjs-core";
import { selectBackend } from "../worker/backend.js";
import { BACKEND_NAMES } from "../worker/backend_names.js";
import { registerWebgpuKernels, WEBGPU_KERNELS } from "../worker/webgpu/kernels/index.js";
import { describeAdapter, installWebgpuGlobals } from "../worker/webgpu_device.js";

export async function startBenchBackend(
  name: string,
  fusedKernels: boolean,
): Promise<{ tfBackend: string; device: string }> {
  let started: { tfBackend: string; device: string };
  if (name === "webgpu" && !(BACKEND_NAMES as readonly string[]).includes("webgpu")) {
    const gpu = await installWebgpuGlobals();
    const adapter = await gpu.requestAdapter();
    if (!adapter) throw new Error("no WebGPU adapter (no Vulkan device found)");
    await import("@tensorflow/tfjs-backend-webgpu");
    if (!(await tf.setBackend("webgpu"))) throw new Error("tfjs could not start the webgpu backend");
    registerWebgpuKernels();
    const a = describeAdapter(adapter.info);
    started = { tfBackend: "webgpu", device: `${a.description}${a.software ? " (software)" : ""}` };
  } else {
    const info = await selectBackend(name);
    started = { tfBackend: info.tfBackend, device: info.device };
  }
  if (!fusedKernels) {
    for (const k of WEBGPU_KERNELS) {
      if (tf.getKernel(k.kernelName, k.backendName)) tf.unregisterKernel(k.kernelName, k.backendName);
    }
  }
  return started;
}
