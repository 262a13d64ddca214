/**
 * eighDescending over many independent matrices on worker threads (thread-pool.ts), for the per-layer
 * decompositions of a task. With the native addon the matrices are decomposed inline, one after the
 * other: LAPACK is several times faster than the TypeScript solver, BLAS already has its own threads,
 * and one result per matrix does not then depend on how calls happened to overlap. closeEighPool() ends
 * the workers.
 */

import { availableParallelism } from "node:os";
import { type Eigh, eighDescending } from "./eigh.js";
import type { EighReply, EighRequest } from "./eigh-worker.js";
import { lapack } from "./lapack.js";
import { type Mat, mat } from "./matrix.js";
import { startSiblingWorker, ThreadPool } from "./thread-pool.js";

export interface EighManyOptions {
  /** Worker threads to use; default os.availableParallelism(). 1 (or a single matrix) runs inline. */
  readonly threads?: number;
}

/** eighDescending of every matrix, in the same order; matrices are not modified. */
export async function eighMany(mats: readonly Mat[], options: EighManyOptions = {}): Promise<Eigh[]> {
  for (const a of mats) {
    if (a.rows !== a.cols) throw new RangeError(`eighMany: matrix must be square, got ${a.rows}×${a.cols}`);
  }
  const threads = Math.max(1, Math.min(options.threads ?? availableParallelism(), mats.length));
  if (threads <= 1 || lapack()) return mats.map((a) => eighDescending(a));
  pool ??= new ThreadPool<EighRequest, EighReply>(
    "eighMany",
    () => startSiblingWorker("eigh-worker"),
    (reply) => ("error" in reply ? reply.error : undefined),
  );
  pool.size = Math.max(pool.size, threads);
  const p = pool;
  return Promise.all(
    mats.map(async (a) => {
      // A copy is transferred, so the caller's matrix stays usable.
      const data = a.data.slice();
      const reply = (await p.submit({ n: a.rows, data }, [data.buffer])) as Exclude<
        EighReply,
        { error: string }
      >;
      return { values: reply.values, vectors: mat(a.rows, a.rows, reply.vectors) };
    }),
  );
}

/** End the worker pool (a later eighMany starts a new one). Jobs still queued are rejected. */
export async function closeEighPool(): Promise<void> {
  const p = pool;
  pool = null;
  await p?.close();
}

let pool: ThreadPool<EighRequest, EighReply> | null = null;
