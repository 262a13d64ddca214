/**
 * The WebGPU device for the `webgpu` backend: Dawn's Node bindings (npm `webgpu`, an optional dependency
 * with its binary inside the package) installed as the browser globals tfjs-backend-webgpu expects. Kept
 * apart from backend selection so that tests, `check:gpu` and the worker all reach the device one way.
 */
import { mkdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";

/** What a worker reports of its adapter (run.json, worker_joined, the info series, the log). */
export interface AdapterDescription {
  readonly vendor: string;
  readonly architecture: string;
  readonly device: string;
  readonly description: string;
  /** True for CPU implementations (lavapipe/llvmpipe, SwiftShader): never chosen unless forced. */
  readonly software: boolean;
}

let installed: GPU | undefined;

/**
 * Installs Dawn's `navigator.gpu` and the WebGPU globals once per process. Mesa's Vulkan drivers want a
 * writable XDG_RUNTIME_DIR; a private temporary one is set when the environment has none.
 */
export async function installWebgpuGlobals(): Promise<GPU> {
  if (installed) return installed;
  if (!process.env.XDG_RUNTIME_DIR) {
    const dir = path.join(os.tmpdir(), `inflora-xdg-${process.getuid?.() ?? "user"}`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    process.env.XDG_RUNTIME_DIR = dir;
  }
  const dawn = (await import("webgpu")) as { create(options: string[]): GPU; globals: object };
  Object.assign(globalThis, dawn.globals);
  const gpu = dawn.create([]);
  Object.defineProperty(globalThis, "navigator", {
    value: { ...(globalThis as { navigator?: object }).navigator, gpu },
    configurable: true,
    writable: true,
  });
  installed = gpu;
  return gpu;
}

const SOFTWARE_ADAPTER = /llvmpipe|lavapipe|swiftshader|software/i;

export function describeAdapter(info: GPUAdapterInfo): AdapterDescription {
  const fields = {
    vendor: info.vendor ?? "",
    architecture: info.architecture ?? "",
    device: info.device ?? "",
    description: info.description ?? "",
  };
  const software = Object.values(fields).some((v) => SOFTWARE_ADAPTER.test(v));
  return { ...fields, software };
}
