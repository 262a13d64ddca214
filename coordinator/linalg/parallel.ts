/**
 * eighDescending over many independent matrices on worker threads, for the per-layer decompositions
 * of a task.
 *
 * The workers form a pool that lives across calls: starting one costs ~1 s when TypeScript is compiled
 * on the fly by tsx (measured on a busy 2-core VM), as much as a 768×768 decomposition. Idle workers
 * are unref'd, so the pool never keeps the process alive; busy ones are ref'd, so a pending eighMany
 * does. closeEighPool() ends them explicitly.
 */

import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { type Eigh, eighDescending } from "./eigh.js";
import type { EighReply, EighRequest } from "./eigh-worker.js";
import { type Mat, mat } from "./matrix.js";

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
  if (threads <= 1) return mats.map((a) => eighDescending(a));
  if (pool === null) pool = new Pool();
  pool.size = Math.max(pool.size, threads);
  const p = pool;
  return Promise.all(mats.map((a) => p.submit(a)));
}

/** End the worker pool (a later eighMany starts a new one). Jobs still queued are rejected. */
export async function closeEighPool(): Promise<void> {
  const p = pool;
  pool = null;
  await p?.close();
}

let pool: Pool | null = null;

interface Job {
  readonly a: Mat;
  readonly resolve: (r: Eigh) => void;
  readonly reject: (err: Error) => void;
}

class Pool {
  size = 0;
  private readonly workers = new Set<Worker>();
  private readonly idle: Worker[] = [];
  private readonly busy = new Map<Worker, Job>();
  private readonly queue: Job[] = [];

  submit(a: Mat): Promise<Eigh> {
    return new Promise((resolve, reject) => {
      this.queue.push({ a, resolve, reject });
      this.pump();
    });
  }

  async close(): Promise<void> {
    const all = [...this.workers];
    this.workers.clear();
    this.idle.length = 0;
    for (const job of this.queue.splice(0)) job.reject(new Error("eighMany: pool closed"));
    for (const job of this.busy.values()) job.reject(new Error("eighMany: pool closed"));
    this.busy.clear();
    await Promise.all(all.map((w) => w.terminate()));
  }

  /** Give queued jobs to idle workers, starting workers up to `size`. */
  private pump(): void {
    while (this.queue.length > 0) {
      let w = this.idle.pop();
      if (w === undefined) {
        if (this.workers.size >= this.size) return;
        w = this.spawn();
      }
      const job = this.queue.shift()!;
      this.busy.set(w, job);
      w.ref();
      // A copy is transferred, so the caller's matrix stays usable.
      const data = job.a.data.slice();
      const req: EighRequest = { n: job.a.rows, data };
      w.postMessage(req, [data.buffer]);
    }
  }

  private spawn(): Worker {
    const w = startWorker();
    this.workers.add(w);
    w.on("message", (reply: EighReply) => {
      const job = this.busy.get(w);
      this.busy.delete(w);
      w.unref();
      this.idle.push(w);
      if (job !== undefined) {
        if ("error" in reply) job.reject(new Error(`eighMany: ${reply.error}`));
        else job.resolve({ values: reply.values, vectors: mat(job.a.rows, job.a.rows, reply.vectors) });
      }
      this.pump();
    });
    w.on("error", (err) => this.drop(w, err));
    w.on("exit", (code) => this.drop(w, new Error(`eighMany: worker exited with code ${code}`)));
    return w;
  }

  /** Forget a dead worker and fail the job it had. */
  private drop(w: Worker, err: Error): void {
    if (!this.workers.delete(w)) return;
    const i = this.idle.indexOf(w);
    if (i >= 0) this.idle.splice(i, 1);
    const job = this.busy.get(w);
    this.busy.delete(w);
    job?.reject(err);
    this.pump();
  }
}

/**
 * The worker runs this module's sibling eigh-worker: compiled, directly; from TypeScript sources (tsx,
 * vitest), through a small .mjs entry that registers tsx in the worker first.
 */
function startWorker(): Worker {
  const fromSource = import.meta.url.endsWith(".ts");
  return new Worker(new URL(fromSource ? "./eigh-worker-boot.mjs" : "./eigh-worker.js", import.meta.url));
}
