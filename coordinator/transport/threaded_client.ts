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
import type {
  CallControl,
  CovarianceRequest,
  CovarianceResult,
  EvalRequest,
  EvalResult,
  SetupReply,
  SetupRequest,
  TaskState,
  TrainParams,
  TrainStepRequest,
  TrainStepResult,
  WorkerClient,
} from "../../common/protocol.js";
import { CallThread, startThread } from "../threads/call_thread.js";
import type { GrpcWorkerClientOptions } from "./grpc_client.js";
import type { PublishedParams } from "./params_broadcast.js";
import {
  type CallMessage,
  deserializeError,
  type SerializedError,
  type ThreadCall,
  type ThreadNote,
} from "./thread_messages.js";

/** Restarts of one transport thread over the coordinator's life before its workers are given up. */
const MAX_THREAD_RESTARTS = 3;

/** One transport thread: a CallThread, the clients it runs, the parameters it holds. */
class TransportThread {
  /** Each client's options and the subject of the published parameters it follows (if any). */
  readonly clients = new Map<number, { options: GrpcWorkerClientOptions; paramsSubject?: string }>();
  /** Parameter objects already sent to this thread (weakly: they go with the step that made them). */
  private sentParams = new WeakSet<object>();
  private readonly thread: CallThread;

  constructor(index: number, spawn: () => Worker) {
    this.thread = new CallThread({
      name: `transport thread ${index}`,
      spawn,
      maxRestarts: MAX_THREAD_RESTARTS,
      decodeError: (e) => deserializeError(e as SerializedError),
      // A new thread holds nothing: it reopens its clients and gets each step's parameters again.
      onStart: (thread) => {
        this.sentParams = new WeakSet();
        for (const [client, open] of this.clients)
          thread.note({ op: "open", client, ...open } satisfies ThreadNote);
      },
    });
  }

  open(client: number, options: GrpcWorkerClientOptions, paramsSubject: string | undefined): void {
    this.clients.set(client, { options, paramsSubject });
    this.thread.note({ op: "open", client, options, paramsSubject } satisfies ThreadNote);
  }

  call(client: number, call: CallMessage, signal?: AbortSignal): Promise<unknown> {
    return this.thread.call({ client, ...call } satisfies ThreadCall, signal);
  }

  /**
   * Sends a step's parameters once per parameter object (the first call of the step that needs them),
   * with the digest they were published on NATS under, if they were.
   */
  sendParams(p: TrainParams, digest: string | undefined): void {
    if (this.sentParams.has(p)) return;
    this.sentParams.add(p);
    this.thread.note({
      op: "params",
      version: p.version,
      Ak: p.Ak,
      Av: p.Av,
      head: p.head,
      digest,
    } satisfies ThreadNote);
  }

  close(): Promise<void> {
    return this.thread.close();
  }
}

/** The transport threads of a coordinator; connect() gives each new worker to the least-loaded one. */
export class TransportThreads {
  private readonly threads: TransportThread[];
  private nextClient = 0;

  /** `spawn` starts one thread running transport_thread.ts (replaceable: tests keep the handles). */
  constructor(count: number, spawn: () => Worker = () => startThread("transport_thread", import.meta.url)) {
    if (!Number.isInteger(count) || count < 1)
      throw new Error(`transport threads: ${count} is not a count ≥ 1`);
    this.threads = Array.from({ length: count }, (_, i) => new TransportThread(i, spawn));
  }

  get size(): number {
    return this.threads.length;
  }

  /** `published`: the parameters the coordinator publishes on NATS, when it does. */
  connect(options: GrpcWorkerClientOptions, published?: PublishedParams): WorkerClient {
    // Configuration errors (an unreadable token or certificate file) surface here, as with a direct client.
    resolveToken(options.security ?? {});
    channelCredentials(options.security?.tls);
    const thread = this.threads.reduce((a, b) => (b.clients.size < a.clients.size ? b : a));
    const id = ++this.nextClient;
    thread.open(id, options, published?.subject);
    return new ThreadedWorkerClient(thread, id, options, published, () => thread.clients.delete(id));
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
    private readonly published: PublishedParams | undefined,
    private readonly forget: () => void,
  ) {
    this.address = options.address;
    this.name = options.name ?? `grpc:${options.address}`;
  }

  private call<T>(call: CallMessage, control?: CallControl): Promise<T> {
    if (this.closed) return Promise.reject(new Error(`worker ${this.name}: ${call.method} after close()`));
    return this.thread.call(this.id, call, control?.signal) as Promise<T>;
  }

  setup(req: SetupRequest): Promise<SetupReply> {
    return this.call({ method: "setup", arg: req });
  }

  setTaskState(state: TaskState): Promise<void> {
    return this.call({ method: "setTaskState", arg: state });
  }

  covariance(req: CovarianceRequest, control?: CallControl): Promise<CovarianceResult[]> {
    return this.call({ method: "covariance", arg: req }, control);
  }

  trainStep(req: TrainStepRequest, control?: CallControl): Promise<TrainStepResult[]> {
    const p = req.params;
    const full = "Ak" in p;
    if (full) this.thread.sendParams(p, this.published?.digestOf(p.version));
    return this.call(
      {
        method: "trainStep",
        arg: {
          stateVersion: req.stateVersion,
          paramsVersion: p.version,
          full,
          shards: req.shards,
        },
      },
      control,
    );
  }

  evaluate(req: EvalRequest, control?: CallControl): Promise<EvalResult[]> {
    return this.call({ method: "evaluate", arg: req }, control);
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
