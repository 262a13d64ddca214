/**
 * Calls an exported function of a module once per argument list, on worker threads: for per-layer work
 * of the coordinator whose layers are independent (the design of B and the DualGPM update of 12 layers:
 * ~60 ms each for 768 with LAPACK, so two cores halve a task's central linear algebra). Arguments and
 * results are structured-cloned (Mat is a plain object). Every BLAS call in the workers is single-
 * threaded, as on the main thread by default (lapack.ts), so results are bitwise those of calling the
 * function in a loop. The first call starts the workers (~1 s from TypeScript sources); they stay idle
 * between calls without keeping the process alive. closeThreadMap() ends them.
 *
 *   const memory = await mapOnThreads<LayerMemory>(new URL("./dualgpm.js", import.meta.url), "updateLayer",
 *     covariances.map((c, i) => [memory[i], c, opts]));
 */
import { availableParallelism } from "node:os";
import type { MapReply, MapRequest } from "./map-worker.js";
import { startSiblingWorker, ThreadPool } from "./thread-pool.js";

export interface MapOptions {
  /** Worker threads; default os.availableParallelism(). 1 (or a single call) runs inline in this thread. */
  readonly threads?: number;
}

let pool: ThreadPool<MapRequest, MapReply> | null = null;

export async function mapOnThreads<R>(
  module: URL,
  fn: string,
  calls: readonly (readonly unknown[])[],
  options: MapOptions = {},
): Promise<R[]> {
  const threads = Math.max(1, Math.min(options.threads ?? availableParallelism(), calls.length));
  if (threads <= 1) {
    const mod = (await import(module.href)) as Record<string, unknown>;
    const f = mod[fn];
    if (typeof f !== "function") throw new Error(`${module.href} has no exported function ${fn}`);
    const out: R[] = [];
    for (const args of calls) out.push((await f(...args)) as R);
    return out;
  }
  pool ??= new ThreadPool<MapRequest, MapReply>(
    "mapOnThreads",
    () => startSiblingWorker("map-worker"),
    (reply) => ("error" in reply ? reply.error : undefined),
  );
  pool.size = Math.max(pool.size, threads);
  const p = pool;
  return Promise.all(
    calls.map(async (args) => {
      const reply = await p.submit({ module: module.href, fn, args });
      return (reply as { result: unknown }).result as R;
    }),
  );
}

/** Ends the worker threads (a later mapOnThreads starts new ones). Calls still queued are rejected. */
export async function closeThreadMap(): Promise<void> {
  const p = pool;
  pool = null;
  await p?.close();
}
