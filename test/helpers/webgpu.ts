/**
 * Puts tfjs on the `webgpu` backend (Dawn, through worker/webgpu_device.ts) with our fused kernels
 * registered, for tests that compare against the generic ops on the same device. No Vulkan device is a
 * failure naming the install command, never a skip.
 */
import * as tf from "@tensorflow/tfjs-core";
import { installWebgpuGlobals } from "../../worker/webgpu_device.js";

export const VULKAN_INSTALL = "apt-get install -t bookworm-backports mesa-vulkan-drivers";

/** Selects webgpu; returns the adapter's description. */
export async function useWebgpu(): Promise<string> {
  const gpu = await installWebgpuGlobals();
  const adapter = await gpu.requestAdapter();
  if (!adapter) throw new Error(`no WebGPU adapter (no Vulkan device found): ${VULKAN_INSTALL}`);
  await import("@tensorflow/tfjs-backend-webgpu");
  if (!(await tf.setBackend("webgpu"))) {
    throw new Error(
      `tfjs could not start the webgpu backend on ${adapter.info.description}: ${VULKAN_INSTALL}`,
    );
  }
  return adapter.info.description;
}
