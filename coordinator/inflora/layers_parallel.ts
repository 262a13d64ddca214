/**
 * The per-task central linear algebra over all layers: the design of B and the DualGPM update. Layers are
 * independent, so for ViT-sized widths they run on worker threads (linalg/thread-map.ts), one layer per
 * call with single-threaded BLAS: bitwise the results of the loop, in about half the wall time on two
 * cores (ViT-B/16: ~1.3 s → ~0.6 s per task with LAPACK). Narrow models stay on this thread, where the
 * ~1 s start of a worker would cost more than it saves.
 */
import { availableParallelism } from "node:os";
import type { Mat } from "../linalg/matrix.js";
import { mapOnThreads } from "../linalg/thread-map.js";
import { designB } from "./design.js";
import { type LayerMemory, type UpdateOptions, updateLayerAndSummarize } from "./dualgpm.js";

const DESIGN_MODULE = new URL("./design.js", import.meta.url);
const DUALGPM_MODULE = new URL("./dualgpm.js", import.meta.url);

/** Below this width a layer takes a few milliseconds: threads are not worth starting. */
export const PARALLEL_MIN_WIDTH = 256;

/** Threads for `layers` layers of width `width`: INFLORA_LINALG_LAYER_THREADS, else the core count. */
export function layerThreads(width: number, layers: number): number {
  if (width < PARALLEL_MIN_WIDTH || layers < 2) return 1;
  const env = process.env.INFLORA_LINALG_LAYER_THREADS;
  const n = env === undefined ? availableParallelism() : Number(env);
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`INFLORA_LINALG_LAYER_THREADS must be a positive integer, got "${env}"`);
  }
  return Math.min(n, layers);
}

/** B_t of every layer (row-major r×D, float64). */
export async function designAllB(
  covariances: readonly Mat[],
  rank: number,
  memories: readonly (LayerMemory | undefined)[] | undefined,
): Promise<Float64Array[]> {
  const threads = layerThreads(covariances[0]?.rows ?? 0, covariances.length);
  if (threads <= 1) return covariances.map((c, i) => designB(c, rank, memories?.[i]));
  return mapOnThreads<Float64Array>(
    DESIGN_MODULE,
    "designB",
    covariances.map((c, i) => [c, rank, memories?.[i]]),
    { threads },
  );
}

/** The DualGPM update of every layer (per-layer rule, then the summary step). */
export async function updateAllLayers(
  memories: readonly (LayerMemory | undefined)[],
  covariances: readonly Mat[],
  opts: UpdateOptions,
): Promise<LayerMemory[]> {
  const threads = layerThreads(covariances[0]?.rows ?? 0, covariances.length);
  if (threads <= 1) return covariances.map((c, i) => updateLayerAndSummarize(memories[i], c, opts));
  return mapOnThreads<LayerMemory>(
    DUALGPM_MODULE,
    "updateLayerAndSummarize",
    covariances.map((c, i) => [memories[i], c, opts]),
    { threads },
  );
}

/**
 * Starts the worker threads and loads the modules in them now (fire and forget), so that the ~1 s start
 * is spent while the workers compute the first covariance pass, not while they wait for B.
 */
export function warmLayerThreads(width: number, layers: number): void {
  const threads = layerThreads(width, layers);
  if (threads <= 1) return;
  const calls = Array.from({ length: threads }, () => [] as const);
  Promise.all([
    mapOnThreads(DESIGN_MODULE, "ready", calls, { threads }),
    mapOnThreads(DUALGPM_MODULE, "ready", calls, { threads }),
  ]).catch(() => {
    // A failure to start shows again, with its error, at the first real call.
  });
}
