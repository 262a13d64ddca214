/**
 * The coordinator's one mechanism for worker threads, used by the transport threads
 * (transport/threaded_client.ts) and by the per-layer linear algebra (linalg/thread-map.ts). A thread
 * answers calls tagged with a sequence number (serve_calls.ts on its side, messages.ts between them),
 * any number in flight, and takes one-way notes. It holds the process open only while a call is
 * pending. A thread that dies fails its calls in flight and is started again, `onStart` replaying what
 * it must hold, until its restart budget is spent; its calls then fail with the reason.
 */
import { Worker } from "node:worker_threads";
import { log } from "../../common/log.js";
import { decodePlainError, type Reply, type ToThread } from "./messages.js";

export interface CallThreadOptions {
  /** Names the thread in errors and logs ("transport thread 0"). */
  readonly name: string;
  readonly spawn: () => Worker;
  /** Restarts over the thread's life before it is given up. */
  readonly maxRestarts: number;
  /** Runs after every start, before any call is posted: replays the notes the thread must hold. */
  readonly onStart?: (thread: CallThread) => void;
  /** Turns a failed Reply's error back into an Error (the inverse of the thread's encodeError). */
  readonly decodeError?: (error: unknown) => Error;
}

interface Pending {
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: Error) => void;
}

export class CallThread {
  private worker!: Worker;
  private readonly pending = new Map<number, Pending>();
  private seq = 0;
  private closed = false;
  private restarts = 0;
  /** Set once the restart budget is spent: every call fails with it. */
  private dead?: Error;

  constructor(private readonly options: CallThreadOptions) {
    this.start();
  }

  /**
   * Posts a call (structured-cloned); the thread's reply settles the promise. `signal` passes the caller
   * giving up on to the thread, whose handler sees it as its own signal.
   */
  call(call: unknown, signal?: AbortSignal): Promise<unknown> {
    const { name } = this.options;
    if (this.closed) return Promise.reject(new Error(`${name} is closed`));
    if (this.dead) return Promise.reject(this.dead);
    const seq = ++this.seq;
    const promise = new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject });
      this.worker.ref();
      this.worker.postMessage({ seq, call } satisfies ToThread);
    });
    signal?.addEventListener(
      "abort",
      () => {
        if (this.pending.has(seq) && !this.dead && !this.closed)
          this.worker.postMessage({ cancel: seq } satisfies ToThread);
      },
      { once: true },
    );
    return promise;
  }

  /** Posts a one-way note (dropped once the thread is given up). */
  note(note: unknown): void {
    if (!this.dead && !this.closed) this.worker.postMessage({ note } satisfies ToThread);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.failPending(new Error(`${this.options.name} closed`));
    await this.worker.terminate();
  }

  private start(): void {
    this.worker = this.options.spawn();
    this.worker.on("message", (m: Reply) => this.settle(m));
    this.worker.on("error", (err) => this.died(err));
    this.worker.on("exit", (code) => this.died(new Error(`exited with code ${code}`)));
    this.worker.unref();
    this.options.onStart?.(this);
  }

  private settle(m: Reply): void {
    const p = this.pending.get(m.seq);
    if (!p) return;
    this.pending.delete(m.seq);
    if (this.pending.size === 0) this.worker.unref();
    if (m.ok) p.resolve(m.value);
    else p.reject((this.options.decodeError ?? decodePlainError)(m.error));
  }

  /** A thread dies from a bug, never from its callers' inputs: fail what was in flight, start anew. */
  private died(err: Error): void {
    if (this.closed || this.dead) return;
    const { name, maxRestarts } = this.options;
    this.failPending(new Error(`${name}: ${err.message}`));
    this.worker.removeAllListeners();
    // A thread that cannot even start (a missing module) would otherwise be restarted forever.
    if (++this.restarts > maxRestarts) {
      this.dead = new Error(`${name} died ${this.restarts} times, last: ${err.message}; not restarted again`);
      log.error({ thread: name, err: err.message }, "thread died too often; not restarted again");
      return;
    }
    log.error({ thread: name, err: err.message, restarts: this.restarts }, "thread died; restarting it");
    this.start();
  }

  private failPending(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}

/**
 * A worker thread running the module `name` beside `of` (a module's import.meta.url). From TypeScript
 * sources (tsx, vitest) it starts through boot.mjs, which registers tsx's loader in the thread first (a
 * worker does not inherit its parent's).
 */
export function startThread(name: string, of: string): Worker {
  if (!of.endsWith(".ts")) return new Worker(new URL(`./${name}.js`, of));
  const entry = new URL(`./${name}.ts`, of).href;
  return new Worker(new URL("./boot.mjs", import.meta.url), { workerData: { entry } });
}
