/**
 * The WebGPU device for the `webgpu` backend: Dawn's Node bindings (npm `webgpu`, an optional dependency
 * with its binary inside the package) installed as the browser globals tfjs-backend-webgpu expects. Kept
 * apart from backend selection so that tests, `check:gpu` and the worker all reach the device one way.
 *
 * Which adapter: Dawn's Node bindings expose no enumeration API, but a `create(["adapter=NAME"])` whose
 * name matches nothing rejects `requestAdapter` with the list of adapters ("Available adapters: * backend:
 * 'vulkan', name: '…'"), which is how the package's README says to list them. `adapter=NAME` then selects
 * the first adapter whose device name contains NAME. Identical GPUs share one name, so Dawn alone cannot pick
 * the second of two; `pickAdapter` says so instead of silently sharing the first (one GPU per container,
 * as the Kubernetes GPU overlay runs it, avoids the question).
 */
import { mkdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { GpuAdapter } from "../common/protocol.js";

/** What a worker reports of its adapter: the protocol's GpuAdapter. */
export type AdapterDescription = GpuAdapter;

/** One entry of Dawn's adapter list: its graphics API and device name. */
export interface AdapterEntry {
  readonly backend: string;
  readonly name: string;
}

/** The Debian command that provides a Vulkan device on a machine without a GPU (see docs/operations.md). */
export const VULKAN_INSTALL_HINT =
  "apt-get install -t bookworm-backports mesa-vulkan-drivers (the bookworm-backports suite in apt's sources; bookworm's own Mesa 22.3 is refused by Dawn)";

type DawnModule = { create(options: string[]): GPU; globals: object };

let installed: { gpu: GPU; adapterName: string | undefined } | undefined;

async function loadDawn(): Promise<DawnModule> {
  if (!process.env.XDG_RUNTIME_DIR) {
    // Mesa's Vulkan drivers want a writable XDG_RUNTIME_DIR; a private one when the environment has none.
    const dir = path.join(os.tmpdir(), `inflora-xdg-${process.getuid?.() ?? "user"}`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    process.env.XDG_RUNTIME_DIR = dir;
  }
  return (await import("webgpu")) as DawnModule;
}

/**
 * Installs Dawn's `navigator.gpu` and the WebGPU globals once per process, restricted to the adapters
 * whose name contains `adapterName` when one is given.
 */
export async function installWebgpuGlobals(adapterName?: string): Promise<GPU> {
  if (installed) {
    if (adapterName !== undefined && adapterName !== installed.adapterName) {
      throw new Error(
        `WebGPU already set up for adapter "${installed.adapterName ?? "default"}"; cannot switch to "${adapterName}"`,
      );
    }
    return installed.gpu;
  }
  const dawn = await loadDawn();
  Object.assign(globalThis, dawn.globals);
  const gpu = dawn.create(adapterName === undefined ? [] : [`adapter=${adapterName}`]);
  Object.defineProperty(globalThis, "navigator", {
    value: { ...(globalThis as { navigator?: object }).navigator, gpu },
    configurable: true,
    writable: true,
  });
  installed = { gpu, adapterName };
  return gpu;
}

/** A name no adapter has: Dawn then answers with the list of the adapters it found. */
const NO_SUCH_ADAPTER = "inflora-list-adapters-\u0001";

/** Every adapter Dawn finds, in Dawn's order; empty when there is no Vulkan (Metal, D3D) device at all. */
export async function listAdapters(): Promise<AdapterEntry[]> {
  const dawn = await loadDawn();
  let lister: GPU | undefined = dawn.create([`adapter=${NO_SUCH_ADAPTER}`]);
  try {
    const adapter = await lister.requestAdapter();
    if (adapter === null) return [];
    throw new Error("Dawn returned an adapter for a name no adapter has; cannot list adapters");
  } catch (err) {
    return parseAdapterList(err instanceof Error ? err.message : String(err));
  } finally {
    // Dawn keeps the process alive while a GPU object is referenced.
    lister = undefined;
  }
}

/**
 * The description of the adapter Dawn's `adapter=NAME` filter selects, from a throw-away instance: a
 * process that passes webgpu over keeps no WebGPU globals.
 */
export async function describeAdapterNamed(name: string, gpu?: number): Promise<AdapterDescription> {
  const dawn = await loadDawn();
  let probe: GPU | undefined = dawn.create([`adapter=${name}`]);
  try {
    const adapter = await probe.requestAdapter({ powerPreference: "high-performance" });
    if (!adapter) throw new Error(`adapter "${name}" did not answer`);
    return describeAdapter(adapter.info, gpu);
  } finally {
    probe = undefined;
  }
}

/** Dawn's "Available adapters:" lines, as `GPU.requestAdapter` words them. */
export function parseAdapterList(message: string): AdapterEntry[] {
  const out: AdapterEntry[] = [];
  for (const m of message.matchAll(/^\s*\*\s*backend:\s*'([^']*)',\s*name:\s*'(.*)'\s*$/gm)) {
    out.push({ backend: m[1], name: m[2] });
  }
  return out;
}

const SOFTWARE_ADAPTER = /llvmpipe|lavapipe|swiftshader|software/i;

export function isSoftwareAdapterName(name: string): boolean {
  return SOFTWARE_ADAPTER.test(name);
}

export class AdapterChoiceError extends Error {
  override readonly name = "AdapterChoiceError";
}

/**
 * The adapter a process takes: the `gpu`-th hardware adapter when `gpu` is given, else the first hardware
 * adapter, else (only when `allowSoftware`) the first software one. Returns the name Dawn's `adapter=`
 * filter selects it by; throws when that filter cannot reach it.
 */
export function pickAdapter(
  adapters: readonly AdapterEntry[],
  opts: { gpu?: number; allowSoftware: boolean },
): { entry: AdapterEntry; gpu?: number } {
  const hardware = adapters.filter((a) => !isSoftwareAdapterName(a.name));
  const listed = adapters.map((a) => `"${a.name}" (${a.backend})`).join(", ") || "none";
  if (opts.gpu !== undefined) {
    if (!Number.isInteger(opts.gpu) || opts.gpu < 0) {
      throw new AdapterChoiceError(`--gpu: expected a GPU index 0, 1, …; got ${opts.gpu}`);
    }
    const entry = hardware[opts.gpu];
    if (!entry) {
      throw new AdapterChoiceError(
        `--gpu ${opts.gpu}: only ${hardware.length} hardware GPU adapter(s) found; adapters: ${listed}`,
      );
    }
    const first = adapters.findIndex((a) => a.name.includes(entry.name));
    if (adapters[first] !== entry) {
      throw new AdapterChoiceError(
        `--gpu ${opts.gpu}: adapter "${entry.name}" is named like an earlier one, and Dawn selects adapters by name; run one worker per GPU with the GPU confined by the container (NVIDIA_VISIBLE_DEVICES, the device plugin's nvidia.com/gpu: 1) and --gpu 0`,
      );
    }
    return { entry, gpu: opts.gpu };
  }
  if (hardware.length > 0) return { entry: hardware[0], gpu: 0 };
  if (adapters.length > 0 && opts.allowSoftware) return { entry: adapters[0] };
  if (adapters.length > 0) {
    throw new AdapterChoiceError(
      `only a software adapter (${listed}); webgpu is not chosen on one unless forced (--backend webgpu)`,
    );
  }
  throw new AdapterChoiceError(`no WebGPU adapter (no Vulkan device); on Debian: ${VULKAN_INSTALL_HINT}`);
}

/** How `--workers N` spreads local workers: worker i takes GPU i mod G (none without hardware GPUs). */
export function spreadOverGpus(workers: number, hardwareGpus: number): (number | undefined)[] {
  return Array.from({ length: workers }, (_, i) => (hardwareGpus > 0 ? i % hardwareGpus : undefined));
}

export function countHardwareAdapters(adapters: readonly AdapterEntry[]): number {
  return adapters.filter((a) => !isSoftwareAdapterName(a.name)).length;
}

export function describeAdapter(info: GPUAdapterInfo, gpu?: number): AdapterDescription {
  const fields = {
    vendor: info.vendor ?? "",
    architecture: info.architecture ?? "",
    device: info.device ?? "",
    description: info.description ?? "",
  };
  const software = Object.values(fields).some((v) => SOFTWARE_ADAPTER.test(v));
  return { ...fields, software, ...(gpu === undefined ? {} : { gpu }) };
}

/** The adapter's one-line label in logs and the `device` field: description, else vendor and device. */
export function adapterLabel(a: AdapterDescription): string {
  const name = a.description || [a.vendor, a.device].filter(Boolean).join(" ") || "unknown adapter";
  return `${name}${a.software ? " (software)" : ""}${a.gpu === undefined ? "" : `, gpu ${a.gpu}`}`;
}
