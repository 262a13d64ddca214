/**
 * A pool of worker threads that answer one request message with one reply message. Starting a worker
 * costs ~1 s when TypeScript is compiled on the fly by tsx (measured on a busy 2-core VM), so the pool
 * lives across calls. Idle workers are unref'd, so the pool never keeps the process alive; busy ones are
 * ref'd, so a pending request does. close() ends them.
 */
import { Worker } from "node:worker_threads";

interface Job<Req, Rep> {
  readonly req: Req;
  readonly transfer: readonly ArrayBuffer[];
  readonly resolve: (r: Rep) => void;
  readonly reject: (err: Error) => void;
}

export class ThreadPool<Req, Rep> {
  /** Upper bound on workers; raise it before submitting to use more. */
  size = 0;
  private readonly workers = new Set<Worker>();
  private readonly idle: Worker[] = [];
  private readonly busy = new Map<Worker, Job<Req, Rep>>();
  private readonly queue: Job<Req, Rep>[] = [];

  /**
   * `start` creates a worker that replies to every request message with one reply message; `failed`
   * turns a reply into an error message when it reports one.
   */
  constructor(
    private readonly name: string,
    private readonly start: () => Worker,
    private readonly failed: (reply: Rep) => string | undefined,
  ) {}

  submit(req: Req, transfer: readonly ArrayBuffer[] = []): Promise<Rep> {
    return new Promise((resolve, reject) => {
      this.queue.push({ req, transfer, resolve, reject });
      this.pump();
    });
  }

  async close(): Promise<void> {
    const all = [...this.workers];
    this.workers.clear();
    this.idle.length = 0;
    for (const job of this.queue.splice(0)) job.reject(new Error(`${this.name}: pool closed`));
    for (const job of this.busy.values()) job.reject(new Error(`${this.name}: pool closed`));
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
      w.postMessage(job.req, [...job.transfer]);
    }
  }

  private spawn(): Worker {
    const w = this.start();
    this.workers.add(w);
    w.on("message", (reply: Rep) => {
      const job = this.busy.get(w);
      this.busy.delete(w);
      w.unref();
      this.idle.push(w);
      if (job !== undefined) {
        const error = this.failed(reply);
        if (error !== undefined) job.reject(new Error(`${this.name}: ${error}`));
        else job.resolve(reply);
      }
      this.pump();
    });
    w.on("error", (err) => this.drop(w, err));
    w.on("exit", (code) => this.drop(w, new Error(`${this.name}: worker exited with code ${code}`)));
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
 * A worker running the module `name` beside `of` (a module's import.meta.url; default: this directory):
 * compiled, directly (`name.js`); from TypeScript sources (tsx, vitest), through `name-boot.mjs`, which
 * registers tsx in the worker first (a worker does not inherit its parent's loader).
 */
export function startSiblingWorker(name: string, of: string = import.meta.url): Worker {
  const fromSource = of.endsWith(".ts");
  return new Worker(new URL(fromSource ? `./${name}-boot.mjs` : `./${name}.js`, of));
}
