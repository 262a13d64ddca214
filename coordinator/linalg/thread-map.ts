/**
 * Calls an exported function of a module once per argument list, on worker threads: for per-layer work
 * of the coordinator whose layers are independent (the design of B and the DualGPM update of 12 layers:
 * ~60 ms each for 768 with LAPACK, so two cores halve a task's central linear algebra). Arguments and
 * results are structured-cloned (Mat is a plain object). Every BLAS call in the threads is single-
 * threaded, as on the main thread by default (lapack.ts), so results are bitwise those of calling the
 * function in a loop. The threads are CallThreads (threads/call_thread.ts), as the transport's are; the
 * first call starts them (~1 s from TypeScript sources) and they stay idle between calls without
 * keeping the process alive. closeThreadMap() ends them.
 *
 *   const memory = await mapOnThreads<LayerMemory>(new URL("./dualgpm.js", import.meta.url), "updateLayer",
 *     covariances.map((c, i) => [memory[i], c, opts]));
 */
import { availableParallelism } from "node:os";
import { CallThread, startThread } from "../threads/call_thread.js";
import type { MapCall } from "./map-worker.js";

export interface MapOptions {
  /** Worker threads; default os.availableParallelism(). 1 (or a single call) runs inline in this thread. */
  readonly threads?: number;
}

/** Restarts of one thread before its calls fail for good (until closeThreadMap). */
const MAX_RESTARTS = 3;

const threads: CallThread[] = [];

export async function mapOnThreads<R>(
  module: URL,
  fn: string,
  calls: readonly (readonly unknown[])[],
  options: MapOptions = {},
): Promise<R[]> {
  const count = Math.max(1, Math.min(options.threads ?? availableParallelism(), calls.length));
  if (count <= 1) {
    const mod = (await import(module.href)) as Record<string, unknown>;
    const f = mod[fn];
    if (typeof f !== "function") throw new Error(`${module.href} has no exported function ${fn}`);
    const out: R[] = [];
    for (const args of calls) out.push((await f(...args)) as R);
    return out;
  }
  while (threads.length < count) {
    threads.push(
      new CallThread({
        name: `linalg thread ${threads.length}`,
        spawn: () => startThread("map-worker", import.meta.url),
        maxRestarts: MAX_RESTARTS,
      }),
    );
  }
  // Each thread takes the next call when it is done with its last: uneven calls still balance.
  const out = new Array<R>(calls.length);
  let next = 0;
  await Promise.all(
    threads.slice(0, count).map(async (thread) => {
      while (next < calls.length) {
        const i = next++;
        out[i] = (await thread.call({ module: module.href, fn, args: calls[i] } satisfies MapCall)) as R;
      }
    }),
  );
  return out;
}

/** Ends the worker threads (a later mapOnThreads starts new ones). Calls in flight are rejected. */
export async function closeThreadMap(): Promise<void> {
  await Promise.all(threads.splice(0).map((t) => t.close()));
}
