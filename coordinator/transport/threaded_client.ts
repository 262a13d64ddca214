/**
 * The gRPC transport on transport threads. Each GrpcWorkerClient runs in one of a few worker threads;
 * the coordinator holds a ThreadedWorkerClient, which forwards every call and gets the result back with
 * its typed arrays moved. Receiving and checking the replies (ViT-B/16 at 16 micro-shards: 12 MB of
 * gradients per step, 28 MB of covariance per shard) and writing the parameter broadcast then use other
 * cores, in parallel, and the main thread keeps only what must be serial: the in-order float64
 * reduction, the optimizer, the plan. Errors come back as the same classes (MalformedReplyError,
 * WorkerRpcError, StaleVersionError), so the worker pool treats them exactly as with direct clients.
 */
import { availableParallelism } from "node:os";
import type { Worker } from "node:worker_threads";
import { ConfigError } from "../../common/config.js";
import { channelCredentials, resolveToken } from "../../common/grpc_security.js";
import { log } from "../../common/log.js";
import type {
  CovarianceRequest,
  CovarianceResult,
  EvalRequest,
  EvalResult,
  SetupReply,
  SetupRequest,
  TaskState,
  TrainStepRequest,
  TrainStepResult,
  WorkerClient,
} from "../../common/protocol.js";
import { startSiblingWorker } from "../linalg/thread-pool.js";
import type { GrpcWorkerClientOptions } from "./grpc_client.js";
import { type CallMessage, deserializeError, type FromThread, type ToThread } from "./thread_messages.js";

/** Restarts of one transport thread over the coordinator's life before its workers are given up. */
const MAX_THREAD_RESTARTS = 3;

interface Pending {
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: Error) => void;
}

/** One transport thread: its worker, its calls in flight, the clients it runs. */
class TransportThread {
  private worker!: Worker;
  private readonly pending = new Map<number, Pending>();
  private seq = 0;
  /** Parameter objects already sent to this thread (weakly: they go with the step that made them). */
  private sentParams = new WeakSet<object>();
  readonly clients = new Map<number, GrpcWorkerClientOptions>();
  private closed = false;
  private restarts = 0;
  /** Set once the restart budget is spent: every call fails with it. */
  private dead?: Error;

  constructor(
    readonly index: number,
    private readonly spawn: () => Worker,
  ) {
    this.start();
  }

  private start(): void {
    this.worker = this.spawn();
    this.worker.on("message", (m: FromThread) => {
      const p = this.pending.get(m.seq);
      if (!p) return;
      this.pending.delete(m.seq);
      if (this.pending.size === 0) this.worker.unref();
      if (m.ok) p.resolve(m.value);
      else p.reject(deserializeError(m.error));
    });
    this.worker.on("error", (err) => this.died(err));
    this.worker.on("exit", (code) => this.died(new Error(`exited with code ${code}`)));
    this.worker.unref();
    for (const [client, options] of this.clients) this.post({ op: "open", client, options });
  }

  /**
   * A thread that dies (a bug, never a worker's fault) fails its calls in flight — the pool redoes
   * them elsewhere — and is replaced, with its clients reopened, so later calls work again.
   */
  private died(err: Error): void {
    if (this.closed || this.dead) return;
    for (const p of this.pending.values())
      p.reject(new Error(`transport thread ${this.index}: ${err.message}`));
    this.pending.clear();
    this.sentParams = new WeakSet();
    this.worker.removeAllListeners();
    // A thread that cannot even start (a missing module) would otherwise be restarted forever.
    if (++this.restarts > MAX_THREAD_RESTARTS) {
      this.dead = new Error(
        `transport thread ${this.index} died ${this.restarts} times, last: ${err.message}; not restarted again`,
      );
      log.error({ thread: this.index, err: err.message }, "transport thread died too often");
      return;
    }
    log.error(
      { thread: this.index, err: err.message, restarts: this.restarts },
      "transport thread died; restarting it",
    );
    this.start();
  }

  post(msg: ToThread): void {
    if (!this.dead) this.worker.postMessage(msg);
  }

  call(client: number, call: CallMessage): Promise<unknown> {
    if (this.closed) return Promise.reject(new Error(`transport thread ${this.index} is closed`));
    if (this.dead) return Promise.reject(this.dead);
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject });
      this.worker.ref();
      this.post({ op: "call", seq, client, ...call } as ToThread);
    });
  }

  /** Sends a step's parameters once per parameter object (the first call of the step that needs them). */
  sendParams(p: Extract<TrainStepRequest["params"], { Ak: unknown }>): void {
    if (this.sentParams.has(p)) return;
    this.sentParams.add(p);
    this.post({ op: "params", version: p.version, Ak: p.Ak, Av: p.Av, head: p.head });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const p of this.pending.values()) p.reject(new Error(`transport thread ${this.index} closed`));
    this.pending.clear();
    await this.worker.terminate();
  }
}

/** The transport threads of a coordinator; connect() gives each new worker to the least-loaded one. */
export class TransportThreads {
  private readonly threads: TransportThread[];
  private nextClient = 0;

  /** `spawn` starts one thread running transport_thread.ts (replaceable: tests keep the handles). */
  constructor(
    count: number,
    spawn: () => Worker = () => startSiblingWorker("transport_thread", import.meta.url),
  ) {
    if (!Number.isInteger(count) || count < 1)
      throw new Error(`transport threads: ${count} is not a count ≥ 1`);
    this.threads = Array.from({ length: count }, (_, i) => new TransportThread(i, spawn));
  }

  get size(): number {
    return this.threads.length;
  }

  connect(options: GrpcWorkerClientOptions): WorkerClient {
    // Configuration errors (an unreadable token or certificate file) surface here, as with a direct client.
    resolveToken(options.security ?? {});
    channelCredentials(options.security?.tls);
    const thread = this.threads.reduce((a, b) => (b.clients.size < a.clients.size ? b : a));
    const id = ++this.nextClient;
    thread.clients.set(id, options);
    thread.post({ op: "open", client: id, options });
    return new ThreadedWorkerClient(thread, id, options, () => thread.clients.delete(id));
  }

  async close(): Promise<void> {
    await Promise.all(this.threads.map((t) => t.close()));
  }
}

class ThreadedWorkerClient implements WorkerClient {
  readonly name: string;
  readonly address: string;
  private closed = false;

  constructor(
    private readonly thread: TransportThread,
    private readonly id: number,
    options: GrpcWorkerClientOptions,
    private readonly forget: () => void,
  ) {
    this.address = options.address;
    this.name = options.name ?? `grpc:${options.address}`;
  }

  private call<T>(call: CallMessage): Promise<T> {
    if (this.closed) return Promise.reject(new Error(`worker ${this.name}: ${call.method} after close()`));
    return this.thread.call(this.id, call) as Promise<T>;
  }

  setup(req: SetupRequest): Promise<SetupReply> {
    return this.call({ method: "setup", arg: req });
  }

  setTaskState(state: TaskState): Promise<void> {
    return this.call({ method: "setTaskState", arg: state });
  }

  covariance(req: CovarianceRequest): Promise<CovarianceResult[]> {
    return this.call({ method: "covariance", arg: req });
  }

  trainStep(req: TrainStepRequest): Promise<TrainStepResult[]> {
    const p = req.params;
    const full = "Ak" in p;
    if (full) this.thread.sendParams(p);
    return this.call({
      method: "trainStep",
      arg: {
        stateVersion: req.stateVersion,
        paramsVersion: p.version,
        full,
        shards: req.shards,
        published: req.published,
      },
    });
  }

  evaluate(req: EvalRequest): Promise<EvalResult[]> {
    return this.call({ method: "evaluate", arg: req });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.call({ method: "close" });
    } finally {
      this.closed = true;
      this.forget();
    }
  }
}

/**
 * Transport threads when none are asked for: $INFLORA_TRANSPORT_THREADS, else one per core beyond the
 * two the main thread and the system need, at most four (measured: bench/results/allreduce.md).
 */
export function defaultTransportThreads(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.INFLORA_TRANSPORT_THREADS?.trim();
  if (raw) {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 0) {
      throw new ConfigError(
        `INFLORA_TRANSPORT_THREADS=${raw}: expected a whole number ≥ 0 (0: the main thread)`,
      );
    }
    return n;
  }
  return Math.min(4, Math.max(0, availableParallelism() - 2));
}
