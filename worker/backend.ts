/**
 * Compute backend selection: tfjs-node-gpu → webgpu → tfjs-node → blas → wasm → cpu, first available wins
 * unless one is forced (`--backend` / INFLORA_BACKEND). The native packages and the WebGPU ones (`webgpu`,
 * `@tensorflow/tfjs-backend-webgpu`) are optionalDependencies whose install may have failed or been
 * skipped, so each is probed with a dynamic import in try/catch. `webgpu` is taken by itself only on a
 * hardware adapter: on a software one (lavapipe, SwiftShader) the CPU backends are faster, so it runs there
 * only when forced. `blas` (the cpu backend with OpenBLAS matmuls, worker/blas_backend.ts) is a candidate only when
 * the optional addon of `npm run build:native` loaded; otherwise it is passed over silently and the log
 * says why.
 */
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import * as tf from "@tensorflow/tfjs-core";
// Side effect: registers the gradient functions; tfjs-core alone registers none in Node.
import "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-cpu";

import { log } from "../common/log.js";
import { packageFile } from "../common/package_files.js";
import { describeNative, nativeStatus } from "../native/index.js";
import { BACKEND_NAMES, type BackendName } from "./backend_names.js";
import { BLAS_BACKEND, registerBlasBackend } from "./blas_backend.js";
import {
  AdapterChoiceError,
  type AdapterDescription,
  adapterLabel,
  describeAdapterNamed,
  installWebgpuGlobals,
  listAdapters,
  pickAdapter,
} from "./webgpu_device.js";

export { BACKEND_NAMES, type BackendName };

export interface BackendInfo {
  readonly name: BackendName;
  /** tfjs's own backend id ("tensorflow", "blas", "wasm", "cpu"). */
  readonly tfBackend: string;
  readonly device: string;
  /** The WebGPU adapter the `webgpu` backend runs on. */
  readonly adapter?: AdapterDescription;
  /** Why earlier candidates were passed over, for the log. */
  readonly skipped: readonly string[];
}

/** What a process asks of selection: a forced backend, and for `webgpu` which hardware GPU. */
export interface BackendRequest {
  readonly backend?: string;
  /** `--gpu N`: the Nth hardware WebGPU adapter. */
  readonly gpu?: number;
}

export class BackendError extends Error {
  override readonly name = "BackendError";
}

let selected: BackendInfo | undefined;
/** The selection in flight: two engines setting up at once must share one initialisation. */
let selecting: Promise<BackendInfo> | undefined;

export function parseBackendName(value: string, source: string): BackendName {
  if ((BACKEND_NAMES as readonly string[]).includes(value)) return value as BackendName;
  throw new BackendError(
    `${source}: unknown backend "${value}"; expected one of ${BACKEND_NAMES.join(", ")}`,
  );
}

const require = createRequire(import.meta.url);

/** Exported for tests: `pkg` may be any import specifier. */
export async function tryNative(pkg: string): Promise<string | undefined> {
  try {
    await import(pkg);
  } catch (err) {
    return `${pkg} not usable (${firstLine(err)})`;
  }
  try {
    if (!(await tf.setBackend("tensorflow"))) return `${pkg} imported but its backend did not initialise`;
  } catch (err) {
    return `${pkg} backend failed to initialise (${firstLine(err)})`;
  }
  return undefined;
}

/** The tfjs wasm binaries: in node_modules, or in the one-folder bundle's wasm/ (scripts/bundle.ts). */
function wasmBinaryDir(): string {
  try {
    return path.join(path.dirname(require.resolve("@tensorflow/tfjs-backend-wasm/package.json")), "dist");
  } catch {
    return packageFile("wasm");
  }
}

async function tryWasm(): Promise<string | undefined> {
  try {
    const wasm = await import("@tensorflow/tfjs-backend-wasm");
    // Load the .wasm binaries from disk; never from the network.
    wasm.setWasmPaths(wasmBinaryDir() + path.sep);
    if (!(await tf.setBackend("wasm"))) return "wasm backend did not initialise";
  } catch (err) {
    return `wasm backend failed (${firstLine(err)})`;
  }
  return undefined;
}

async function tryBlas(): Promise<string | undefined> {
  const native = nativeStatus();
  if (!native.addon) return native.reason;
  try {
    registerBlasBackend(native.addon);
    if (!(await tf.setBackend(BLAS_BACKEND))) return "blas backend did not initialise";
  } catch (err) {
    return `blas backend failed (${firstLine(err)})`;
  }
  return undefined;
}

/**
 * Dawn's device, then tfjs's webgpu backend on it. The backend module registers itself only where
 * `navigator.gpu` exists, so the globals go in before it is imported.
 */
async function tryWebgpu(
  forced: boolean,
  gpu: number | undefined,
): Promise<{ reason: string } | { adapter: AdapterDescription }> {
  let chosen: ReturnType<typeof pickAdapter>;
  try {
    // A software adapter is described before it is passed over, so the log names what was found.
    chosen = pickAdapter(await listAdapters(), { gpu, allowSoftware: true });
  } catch (err) {
    if (err instanceof AdapterChoiceError) return { reason: `webgpu: ${err.message}` };
    return { reason: `webgpu not usable (${firstLine(err)})` };
  }
  try {
    const described = await describeAdapterNamed(chosen.entry.name, chosen.gpu);
    if (described.software && !forced) {
      return {
        reason: `webgpu: only a software adapter (vendor ${described.vendor}, architecture ${described.architecture}, ${described.description}); not chosen unless forced (--backend webgpu)`,
      };
    }
    await installWebgpuGlobals(chosen.entry.name);
    await import("@tensorflow/tfjs-backend-webgpu");
    if (!(await tf.setBackend("webgpu"))) return { reason: "webgpu backend did not initialise" };
    await registerWebgpuKernelsOnce();
    return { adapter: described };
  } catch (err) {
    return { reason: `webgpu backend failed (${firstLine(err)})` };
  }
}

/**
 * The fused WGSL kernels of worker/webgpu/kernels (registered for the webgpu backend only). Call site kept
 * here so that every process that selects webgpu gets them the same way; loaded only then.
 */
async function registerWebgpuKernelsOnce(): Promise<void> {
  const { registerWebgpuKernels } = await import("./webgpu/kernels/index.js");
  registerWebgpuKernels();
}

function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split("\n")[0].slice(0, 200);
}

/**
 * Selects and initialises the backend once per process. `requested` (or INFLORA_BACKEND) forces one and
 * fails loudly when it cannot start; otherwise the first candidate that works is used.
 */
export async function selectBackend(request?: string | BackendRequest): Promise<BackendInfo> {
  const { backend: requested, gpu } =
    typeof request === "string" || request === undefined ? { backend: request } : request;
  if (!selected && selecting) await selecting.catch(() => undefined);
  if (selected) {
    if (requested && requested !== selected.name) {
      throw new BackendError(
        `backend already initialised as ${selected.name}; cannot switch to ${requested}`,
      );
    }
    return selected;
  }
  selecting = initialise(requested, gpu);
  try {
    return await selecting;
  } finally {
    selecting = undefined;
  }
}

async function initialise(requested: string | undefined, gpu: number | undefined): Promise<BackendInfo> {
  const forcedRaw = requested ?? process.env.INFLORA_BACKEND;
  const forced = forcedRaw
    ? parseBackendName(forcedRaw, requested ? "--backend" : "INFLORA_BACKEND")
    : undefined;
  // Silences tfjs's "install the node backend" banner and skips debug-only checks.
  tf.env().set("PROD", true);
  const candidates: BackendName[] = forced ? [forced] : [...BACKEND_NAMES];
  const skipped: string[] = [];
  for (const name of candidates) {
    let reason: string | undefined;
    let adapter: AdapterDescription | undefined;
    if (name === "blas" && !forced && !nativeStatus().addon) {
      // Optional by design: not a failed candidate, but say which path the process takes and why.
      log.info({ reason: nativeStatus().reason }, "blas backend not available; using the next backend");
      continue;
    }
    if (name === "node-gpu") reason = await tryNative("@tensorflow/tfjs-node-gpu");
    else if (name === "webgpu") {
      const out = await tryWebgpu(forced === "webgpu", gpu);
      if ("reason" in out) reason = out.reason;
      else adapter = out.adapter;
    } else if (name === "node") reason = await tryNative("@tensorflow/tfjs-node");
    else if (name === "blas") reason = await tryBlas();
    else if (name === "wasm") reason = await tryWasm();
    else reason = (await tf.setBackend("cpu")) ? undefined : "cpu backend did not initialise";
    if (reason === undefined) {
      await tf.ready();
      selected = {
        name,
        tfBackend: tf.getBackend(),
        device: adapter ? adapterLabel(adapter) : describeDevice(name),
        ...(adapter ? { adapter } : {}),
        skipped,
      };
      return selected;
    }
    skipped.push(reason);
    if (forced) throw new BackendError(`requested backend ${name} is not available: ${reason}`);
  }
  throw new BackendError(`no compute backend could be initialised:\n  ${skipped.join("\n  ")}`);
}

function describeDevice(name: BackendName): string {
  if (name === "node-gpu") return "gpu (libtensorflow CUDA)";
  const cpu = os.cpus()[0]?.model?.trim() ?? "unknown cpu";
  const addon = nativeStatus().addon;
  const blas = name === "blas" && addon ? `, ${describeNative(addon)}` : "";
  return `${cpu} × ${os.availableParallelism()}${blas}`;
}

export function currentBackend(): BackendInfo | undefined {
  return selected;
}
