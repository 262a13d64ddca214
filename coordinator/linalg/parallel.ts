/**
 * eighDescending over many independent matrices on worker threads (thread-map.ts, the pool the trainer's
 * per-layer linear algebra uses too). With the native addon the matrices are decomposed inline, one after
 * the other: LAPACK is several times faster than the TypeScript solver and BLAS has its own threads.
 * closeEighPool() ends the workers.
 */

import { availableParallelism } from "node:os";
import { type Eigh, eighDescending } from "./eigh.js";
import { lapack } from "./lapack.js";
import type { Mat } from "./matrix.js";
import { closeThreadMap, mapOnThreads } from "./thread-map.js";

export interface EighManyOptions {
  /** Worker threads to use; default os.availableParallelism(). 1 (or a single matrix) runs inline. */
  readonly threads?: number;
}

const EIGH_MODULE = new URL("./eigh.js", import.meta.url);

/** eighDescending of every matrix, in the same order; matrices are not modified. */
export async function eighMany(mats: readonly Mat[], options: EighManyOptions = {}): Promise<Eigh[]> {
  for (const a of mats) {
    if (a.rows !== a.cols) throw new RangeError(`eighMany: matrix must be square, got ${a.rows}×${a.cols}`);
  }
  const threads = Math.max(1, Math.min(options.threads ?? availableParallelism(), mats.length));
  if (threads <= 1 || lapack()) return mats.map((a) => eighDescending(a));
  // Arguments are structured-cloned into the workers, so the caller's matrices stay as they are.
  return mapOnThreads<Eigh>(
    EIGH_MODULE,
    "eighDescending",
    mats.map((a) => [a]),
    { threads },
  );
}

/** End the worker threads (a later eighMany starts them again). */
export async function closeEighPool(): Promise<void> {
  await closeThreadMap();
}
