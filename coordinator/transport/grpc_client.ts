/**
 * A remote worker as a WorkerClient: the gRPC transport the coordinator uses exactly like the in-process
 * WorkerEngine. Every call has a deadline; large payloads stream in per-block / per-slice messages; every
 * reply is validated (MalformedReplyError: quarantine the sender); a worker that lacks a version answers
 * with a status that comes back as StaleVersionError (resend the state or parameters); every other failure
 * is a WorkerRpcError carrying the gRPC code and, for refusals, the worker's reason.
 */
import type { Writable } from "node:stream";
import {
  type CallCredentials,
  type CallOptions,
  type ChannelOptions,
  type ClientReadableStream,
  type ClientWritableStream,
  Metadata,
  makeGenericClientConstructor,
  type ServiceError,
  status,
  waitForClientReady,
} from "@grpc/grpc-js";
import {
  bearerCallCredentials,
  type ClientSecurityOptions,
  channelCredentials,
  resolveToken,
  tlsChannelOptions,
} from "../../common/grpc_security.js";
import {
  DEFAULT_DEADLINE_MS,
  MAX_MESSAGE_BYTES,
  messageLimits,
  REASON_KEY,
  REFUSAL_REASONS,
  type RefusalReason,
  STALE_VERSION_KEY,
  STALE_WHAT_KEY,
} from "../../common/grpc_wire.js";
import {
  type CallControl,
  type CovarianceRequest,
  type CovarianceResult,
  type EvalRequest,
  type EvalResult,
  PROTOCOL_VERSION,
  type SetupReply,
  type SetupRequest,
  StaleVersionError,
  type TaskState,
  type TrainStepRequest,
  type TrainStepResult,
  type WorkerClient,
} from "../../common/protocol.js";
import { TensorCodecError } from "../../common/tensor_codec.js";
import type { SetupResponse as PbSetupResponse } from "../../proto/gen/inflora/v1/setup.js";
import type { SetTaskStateRequest } from "../../proto/gen/inflora/v1/state.js";
import { type WorkerClient as PbWorkerClient, WorkerService } from "../../proto/gen/inflora/v1/worker.js";
import {
  evalOutputToPb,
  serializeTrainStepRequest,
  setupToPb,
  shardsToPb,
  taskStateParts,
  trainStepParts,
} from "./grpc_messages.js";
import {
  CovarianceReplies,
  EvalReplies,
  MalformedReplyError,
  type ReplyContext,
  TrainReplies,
  tolerantReplies,
  UndecodableReply,
} from "./grpc_replies.js";
import type { PublishedParams } from "./params_broadcast.js";

export { MalformedReplyError };

const FLOW_CONTROL_WINDOW = 8 * 1024 * 1024;

/**
 * HTTP/2 keepalive pings while calls are open: a worker that is alive but unreachable (a partition, a
 * host gone without a FIN) leaves a half-open connection on which a call would wait for its whole deadline;
 * a ping unanswered for `timeoutMs` closes the connection, its calls fail UNAVAILABLE, and the pool moves
 * their shards (docs/operations.md, "Faults"). The worker answers pings from its event loop, which a
 * micro-shard's compute blocks, so the timeout must exceed the longest micro-shard.
 */
export interface KeepaliveOptions {
  /** Interval between pings while calls are open. */
  readonly timeMs: number;
  /** How long a ping may go unanswered before the connection counts as dead. */
  readonly timeoutMs: number;
}

export const DEFAULT_KEEPALIVE: KeepaliveOptions = { timeMs: 20_000, timeoutMs: 20_000 };

/**
 * The generated client, with TrainStep's serializer reusing the bytes of parameter messages, and replies
 * that are not protobuf handed on as UndecodableReply (the reply check refuses them by name).
 */
const WorkerGrpcClient = makeGenericClientConstructor(
  tolerantReplies({
    ...WorkerService,
    trainStep: { ...WorkerService.trainStep, requestSerialize: serializeTrainStepRequest },
  }),
  "inflora.v1.Worker",
) as unknown as typeof PbWorkerClient;

export type WorkerMethod = "setup" | "setTaskState" | "covariance" | "trainStep" | "evaluate" | "release";

export interface GrpcWorkerClientOptions {
  /** `host:port` of the worker (IPv6: `[addr]:port`). */
  readonly address: string;
  /** Name in errors and logs (default `grpc:<address>`). */
  readonly name?: string;
  /** Token (else token file, else $INFLORA_TOKEN) and TLS. */
  readonly security?: ClientSecurityOptions;
  /** Deadline of every call (default 10 minutes). */
  readonly deadlineMs?: number;
  /** Per-method deadlines, overriding deadlineMs. */
  readonly deadlines?: Partial<Record<WorkerMethod, number>>;
  /** Largest message either way (default 16 MiB, as the server). */
  readonly maxMessageBytes?: number;
  /** close() first asks the worker to drop the run's model and caches (default true). */
  readonly releaseOnClose?: boolean;
  /** Keepalive pings on open calls (default DEFAULT_KEEPALIVE). */
  readonly keepalive?: KeepaliveOptions;
  /** Extra grpc-js channel options. */
  readonly channelOptions?: ChannelOptions;
}

/** A call that failed with a gRPC status other than "stale version". */
export class WorkerRpcError extends Error {
  override readonly name = "WorkerRpcError";
  constructor(
    readonly worker: string,
    readonly method: WorkerMethod,
    /** The gRPC status code (`status.DEADLINE_EXCEEDED`, `status.UNAVAILABLE`, …). */
    readonly code: status,
    readonly details: string,
    /** For FAILED_PRECONDITION: why the worker refused ("not-set-up": run setup again, …). */
    readonly reason?: RefusalReason,
  ) {
    super(`worker ${worker}: ${method} failed: ${status[code] ?? code}: ${details}`);
  }
}

interface RunInfo {
  readonly runId: string;
  readonly D: number;
  readonly depth: number;
}

export class GrpcWorkerClient implements WorkerClient {
  readonly name: string;
  readonly address: string;
  private readonly client: PbWorkerClient;
  private readonly callCredentials?: CallCredentials;
  private run?: RunInfo;
  /** The worker's id from the last successful setup. */
  workerId?: string;
  /** Σ head classes per state version sent (to check evaluation replies). */
  private readonly stateClasses = new Map<number, number>();
  /** Rank and head width per parameter version sent (to check gradient replies). */
  private readonly paramsShape = new Map<number, { rank: number; classes: number }>();
  private closed = false;
  /** The worker takes published parameters from NATS (its setup reply said so). */
  private paramsSubscribed = false;
  /** Steps whose parameters went by digest, and those the worker then needed resent over gRPC. */
  readonly paramsByDigest = { sent: 0, resent: 0 };

  constructor(
    private readonly options: GrpcWorkerClientOptions,
    /** The parameters the coordinator publishes on NATS, when it does. */
    private readonly published?: PublishedParams,
  ) {
    this.address = options.address;
    this.name = options.name ?? `grpc:${options.address}`;
    const security = options.security ?? {};
    const token = resolveToken(security);
    this.callCredentials = token === undefined ? undefined : bearerCallCredentials(token);
    this.client = new WorkerGrpcClient(options.address, channelCredentials(security.tls), {
      ...messageLimits(options.maxMessageBytes ?? MAX_MESSAGE_BYTES),
      // HTTP/2's default 64 KiB receive window caps a stream at 64 KiB per round trip (64 MB/s at 1 ms):
      // covariance replies are tens of MB, so let the worker run ahead.
      "grpc-node.flow_control_window": FLOW_CONTROL_WINDOW,
      ...keepaliveChannelOptions(options.keepalive ?? DEFAULT_KEEPALIVE),
      ...tlsChannelOptions(security.tls),
      ...options.channelOptions,
    });
  }

  /** Resolves once the channel is connected (or rejects after timeoutMs). */
  waitForReady(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      waitForClientReady(this.client, Date.now() + timeoutMs, (err) => {
        if (err) reject(new WorkerRpcError(this.name, "setup", status.UNAVAILABLE, err.message));
        else resolve();
      });
    });
  }

  async setup(req: SetupRequest): Promise<SetupReply> {
    const reply = await new Promise<PbSetupResponse>((resolve, reject) => {
      const subject = this.published?.subject;
      this.client.setup(setupToPb(req, subject), new Metadata(), this.callOptions("setup"), (err, res) => {
        if (err) reject(this.callError(err, "setup"));
        else resolve(res);
      });
    });
    const fail = (field: string, detail: string) => {
      throw new MalformedReplyError(this.name, "setup", field, detail);
    };
    if ((reply as unknown) instanceof UndecodableReply)
      fail("reply", `cannot be decoded: ${(reply as unknown as UndecodableReply).reason}`);
    if (!reply.workerId) fail("worker_id", "empty");
    if (reply.protocolVersion !== PROTOCOL_VERSION)
      fail("protocol_version", `${reply.protocolVersion}, expected ${PROTOCOL_VERSION}`);
    if (reply.weightsFingerprint !== req.weightsFingerprint) {
      fail("weights_fingerprint", `${reply.weightsFingerprint}, expected ${req.weightsFingerprint}`);
    }
    if (this.run?.runId !== req.runId) {
      this.stateClasses.clear();
      this.paramsShape.clear();
    }
    this.run = { runId: req.runId, D: req.model.embedDim, depth: req.model.depth };
    this.workerId = reply.workerId;
    this.paramsSubscribed = this.published !== undefined && reply.paramsSubscribed === true;
    const { workerId, protocolVersion, weightsFingerprint, backend, device, adapter } = reply;
    // Whether the worker takes each step's parameters from the NATS publish (else one gRPC copy each).
    const transport = { params_over_nats: this.paramsSubscribed };
    return {
      workerId,
      protocolVersion,
      weightsFingerprint,
      backend,
      device,
      ...(adapter ? { adapter } : {}),
      transport,
    };
  }

  async setTaskState(state: TaskState): Promise<void> {
    const run = this.requireRun("setTaskState");
    let call!: ClientWritableStream<SetTaskStateRequest>;
    const settled = new Promise<void>((resolve, reject) => {
      call = this.client.setTaskState(this.callOptions("setTaskState"), (err) => {
        if (err) reject(this.callError(err, "setTaskState"));
        else resolve();
      });
    });
    await writeAll(call, taskStateParts(state, run.runId, run.D), settled);
    await settled;
    remember(
      this.stateClasses,
      state.version,
      state.heads.reduce((s, h) => s + h.classes, 0),
    );
  }

  async covariance(req: CovarianceRequest, control?: CallControl): Promise<CovarianceResult[]> {
    const run = this.requireRun("covariance");
    const replies = new CovarianceReplies(this.replyContext("covariance", run), req.shards);
    const call = this.client.covariance(
      {
        runId: run.runId,
        stateVersion: req.stateVersion,
        shards: shardsToPb(req.shards),
        microBatch: req.microBatch ?? 0,
      },
      new Metadata(),
      this.callOptions("covariance"),
    );
    await this.collect(call, "covariance", (msg) => replies.add(msg), control?.signal);
    return replies.finish();
  }

  /**
   * With parameters published on NATS and a subscribed worker, only their version and digest go over
   * gRPC; a worker that did not get them (or got others) answers "stale params", and they are resent.
   */
  async trainStep(req: TrainStepRequest, control?: CallControl): Promise<TrainStepResult[]> {
    const signal = control?.signal;
    const digest =
      this.paramsSubscribed && "Ak" in req.params ? this.published?.digestOf(req.params.version) : undefined;
    if (digest === undefined) return this.trainStepOnce(req, signal);
    this.paramsByDigest.sent++;
    try {
      return await this.trainStepOnce(req, signal, digest);
    } catch (err) {
      if (!(err instanceof StaleVersionError && err.what === "params")) throw err;
      this.paramsByDigest.resent++;
      return this.trainStepOnce(req, signal);
    }
  }

  /** `digest`: send only the header, naming the parameters published on NATS with this SHA-256. */
  private async trainStepOnce(
    req: TrainStepRequest,
    signal: AbortSignal | undefined,
    digest?: string,
  ): Promise<TrainStepResult[]> {
    const run = this.requireRun("trainStep");
    const p = req.params;
    const known =
      "Ak" in p ? { rank: p.Ak[0].length / run.D, classes: p.head.classes } : this.paramsShape.get(p.version);
    const replies = new TrainReplies(
      this.replyContext("trainStep", run),
      req.shards,
      known?.rank,
      known?.classes,
    );
    const call = this.client.trainStep(new Metadata(), this.callOptions("trainStep"));
    const reading = this.collect(call, "trainStep", (msg) => replies.add(msg), signal);
    await writeAll(call, trainStepParts(req, run.runId, run.D, digest), reading);
    await reading;
    const results = replies.finish();
    if ("Ak" in p) remember(this.paramsShape, p.version, known!);
    return results;
  }

  async evaluate(req: EvalRequest, control?: CallControl): Promise<EvalResult[]> {
    const run = this.requireRun("evaluate");
    const features = req.output === "features";
    const replies = new EvalReplies(
      this.replyContext("evaluate", run),
      req.shards,
      features ? run.D : this.stateClasses.get(req.stateVersion),
    );
    const call = this.client.evaluate(
      {
        runId: run.runId,
        stateVersion: req.stateVersion,
        shards: shardsToPb(req.shards),
        output: evalOutputToPb(req.output),
      },
      new Metadata(),
      this.callOptions("evaluate"),
    );
    await this.collect(call, "evaluate", (msg) => replies.add(msg), control?.signal);
    return replies.finish();
  }

  /** Releases the worker's model (unless releaseOnClose is false), then closes the channel. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const run = this.run;
    if (run && this.options.releaseOnClose !== false) {
      // Best effort: a dead worker must not hold up the coordinator's shutdown.
      const deadline = Math.min(this.deadline("release"), 5_000);
      await new Promise<void>((resolve) => {
        this.client.release(
          { runId: run.runId },
          new Metadata(),
          { ...this.callOptions("release"), deadline: Date.now() + deadline },
          () => resolve(),
        );
      });
    }
    this.client.close();
  }

  private requireRun(method: WorkerMethod): RunInfo {
    if (this.closed) throw new Error(`worker ${this.name}: ${method} after close()`);
    if (!this.run) throw new Error(`worker ${this.name}: ${method} before setup()`);
    return this.run;
  }

  private replyContext(method: WorkerMethod, run: RunInfo): ReplyContext {
    return {
      worker: this.name,
      method,
      D: run.D,
      depth: run.depth,
      maxMessageBytes: this.options.maxMessageBytes ?? MAX_MESSAGE_BYTES,
    };
  }

  private deadline(method: WorkerMethod): number {
    return this.options.deadlines?.[method] ?? this.options.deadlineMs ?? DEFAULT_DEADLINE_MS;
  }

  private callOptions(method: WorkerMethod): Partial<CallOptions> {
    return {
      deadline: Date.now() + this.deadline(method),
      ...(this.callCredentials ? { credentials: this.callCredentials } : {}),
    };
  }

  /**
   * Feeds every reply message to `onMessage`; settles when the call ends. A message that fails validation
   * cancels the call: the rest of a malformed reply is not worth receiving. So does `signal` (the pool no
   * longer needs the answer): the call then fails with CANCELLED, and a worker still waiting to run it
   * skips it.
   */
  private collect<T>(
    call: ClientReadableStream<T>,
    method: WorkerMethod,
    onMessage: (msg: T) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    if (signal?.aborted) call.cancel();
    else signal?.addEventListener("abort", () => call.cancel(), { once: true });
    return new Promise((resolve, reject) => {
      let failed = false;
      const fail = (err: unknown) => {
        if (failed) return;
        failed = true;
        reject(err);
      };
      call.on("data", (msg: T) => {
        if (failed) return;
        try {
          onMessage(msg);
        } catch (err) {
          fail(err);
          call.cancel();
        }
      });
      // grpc-js emits the error status before "end"; the listener stays so a late CANCELLED is not unhandled.
      call.on("error", (err: ServiceError) => fail(this.callError(err, method)));
      call.on("end", () => {
        if (!failed) resolve();
      });
    });
  }

  private callError(err: ServiceError, method: WorkerMethod): Error {
    const md = err.metadata ?? new Metadata();
    const first = (key: string) => {
      const v = md.get(key)[0];
      return v === undefined ? undefined : String(v);
    };
    if (err.code === status.ABORTED) {
      const what = first(STALE_WHAT_KEY);
      const wanted = Number(first(STALE_VERSION_KEY));
      if ((what === "state" || what === "params") && Number.isSafeInteger(wanted))
        return new StaleVersionError(what, wanted);
    }
    const reason = first(REASON_KEY);
    return new WorkerRpcError(
      this.name,
      method,
      err.code,
      err.details,
      REFUSAL_REASONS.includes(reason as RefusalReason) ? (reason as RefusalReason) : undefined,
    );
  }
}

function keepaliveChannelOptions(k: KeepaliveOptions): ChannelOptions {
  if (!(k.timeMs > 0 && k.timeoutMs > 0))
    throw new Error(`keepalive times must be positive, got time ${k.timeMs} ms, timeout ${k.timeoutMs} ms`);
  // Pings only while calls are open: an idle channel has nothing to lose, and its next call pings anew.
  return { "grpc.keepalive_time_ms": k.timeMs, "grpc.keepalive_timeout_ms": k.timeoutMs };
}

/** Keeps the two newest entries: the worker keeps no more, and a late reply may name the previous one. */
function remember<V>(map: Map<number, V>, version: number, value: V): void {
  map.set(version, value);
  for (const v of [...map.keys()].sort((a, b) => a - b).slice(0, -2)) map.delete(v);
}

/**
 * Writes a request stream with backpressure and half-closes it; stops early when the call has already
 * ended (`settled`), whose status then tells why.
 */
async function writeAll<T>(
  call: Writable & { cancel(): void },
  messages: Iterable<T>,
  settled: Promise<unknown>,
): Promise<void> {
  let over = false;
  const ended = settled.then(
    () => {
      over = true;
    },
    () => {
      over = true;
    },
  );
  try {
    for (const msg of messages) {
      if (over) return;
      if (!call.write(msg)) {
        await Promise.race([new Promise<void>((resolve) => call.once("drain", resolve)), ended]);
      }
    }
  } catch (err) {
    // A tensor that does not fit its declared shape: the coordinator's own bug, not the worker's.
    call.cancel();
    if (err instanceof TensorCodecError) throw new Error(`request not sent: ${err.message}`);
    throw err;
  }
  if (!over) call.end();
}
