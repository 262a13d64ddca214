/**
 * The `inflora.v1.Worker` service over any WorkerClient (in practice a WorkerEngine): decodes and validates
 * requests, runs them one at a time on the worker, streams replies in slices, and turns every failure into a
 * gRPC status the coordinator can act on. Nothing a client sends can crash the process: every handler ends
 * in a status.
 */
import type { Readable, Writable } from "node:stream";
import {
  type handleUnaryCall,
  Metadata,
  type MethodDefinition,
  type Server,
  type ServerDuplexStream,
  type ServerReadableStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type StatusObject,
  status,
  type UntypedHandleCall,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { flatten } from "../common/flat_params.js";
import { REASON_KEY, type RefusalReason, STALE_VERSION_KEY, STALE_WHAT_KEY } from "../common/grpc_wire.js";
import { log } from "../common/log.js";
import {
  type CovarianceResult,
  type EvalResult,
  PROTOCOL_VERSION,
  StaleVersionError,
  type TrainStepResult,
  type WorkerClient,
} from "../common/protocol.js";
import { encodeTensor, TensorCodecError } from "../common/tensor_codec.js";
import type * as pb from "../proto/gen/inflora/v1/compute.js";
import { TrainStepResponse } from "../proto/gen/inflora/v1/compute.js";
import type {
  ReleaseRequest,
  ReleaseResponse,
  SetupRequest,
  SetupResponse,
} from "../proto/gen/inflora/v1/setup.js";
import type { SetTaskStateRequest, SetTaskStateResponse } from "../proto/gen/inflora/v1/state.js";
import type { WorkerServer } from "../proto/gen/inflora/v1/worker.js";
import {
  type Dims,
  decoded,
  decodeEvalOutput,
  decodeSetup,
  decodeShards,
  dimsOf,
  InvalidRequestError,
  TaskStateAssembler,
  TrainStepAssembler,
  UndecodableMessage,
  version,
} from "./grpc_requests.js";
import type { ParamsFeed } from "./nats_params.js";

/** A handshake or run check that failed: FAILED_PRECONDITION with a machine-readable reason. */
export class WorkerRefusal extends Error {
  override readonly name = "WorkerRefusal";
  constructor(
    readonly reason: RefusalReason,
    message: string,
  ) {
    super(message);
  }
}

class CallCancelled extends Error {
  override readonly name = "CallCancelled";
}

export interface WorkerServiceOptions {
  /** Target bytes of one streamed slice. */
  readonly chunkBytes: number;
  /** Told whenever the worker becomes usable (a successful Setup) or stops being so. */
  readonly onReady?: (ready: boolean) => void;
  /** Parameters the coordinator publishes on NATS (a worker started with --nats). */
  readonly paramsFeed?: ParamsFeed;
}

/** What the engine throws when the weights or data a Setup names cannot serve it (matched by name). */
const SETUP_INPUT_ERRORS = new Set([
  "WeightsError",
  "SafetensorsError",
  "NpyError",
  "ZipError",
  "PickleError",
  "PthError",
  "CheckpointConversionError",
  "DataError",
]);

/** How long a TrainStep that names published parameters waits for them to arrive on NATS. */
const PUBLISHED_PARAMS_WAIT_MS = 250;

type Call = { readonly cancelled: boolean; getPeer(): string };

export class WorkerGrpcService {
  /** The run this worker is set up for, and the dimensions every tensor is checked against. */
  private current?: { runId: string; dims: Dims };
  /** Head width per parameter version the worker holds, to check targets of version-only steps. */
  private readonly paramsClasses = new Map<number, number>();
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly worker: WorkerClient,
    private readonly options: WorkerServiceOptions,
  ) {}

  handlers(): WorkerServer {
    return {
      setup: this.unary("Setup", (call: ServerUnaryCall<SetupRequest, SetupResponse>) => this.setup(call)),
      setTaskState: (call: ServerReadableStream<SetTaskStateRequest, SetTaskStateResponse>, callback) => {
        this.setTaskState(call).then(
          (reply) => callback(null, reply),
          (err) => callback(this.status(err, "SetTaskState", call)),
        );
      },
      covariance: (call: ServerWritableStream<pb.CovarianceRequest, pb.CovarianceResponse>) =>
        this.reply(call, "Covariance", () => this.covariance(call)),
      trainStep: (call: ServerDuplexStream<pb.TrainStepRequest, pb.TrainStepResponse>) =>
        this.reply(call, "TrainStep", () => this.trainStep(call)),
      evaluate: (call: ServerWritableStream<pb.EvaluateRequest, pb.EvaluateResponse>) =>
        this.reply(call, "Evaluate", () => this.evaluate(call)),
      release: this.unary("Release", (call: ServerUnaryCall<ReleaseRequest, ReleaseResponse>) =>
        this.release(call),
      ),
    };
  }

  private async setup(call: ServerUnaryCall<SetupRequest, SetupResponse>): Promise<SetupResponse> {
    const req = decodeSetup(decoded(call.request, "request"));
    // The NATS subject of the coordinator's published parameters: the gRPC transport's own field.
    const subject = call.request.paramsSubject || undefined;
    if (req.protocolVersion !== PROTOCOL_VERSION) {
      throw new WorkerRefusal(
        "protocol-version",
        `protocol version ${req.protocolVersion} requested; this worker speaks ${PROTOCOL_VERSION}`,
      );
    }
    try {
      const reply = await this.serial(call, () => this.worker.setup(req));
      if (this.current?.runId !== req.runId) this.paramsClasses.clear();
      this.current = { runId: req.runId, dims: dimsOf(req.model) };
      const paramsSubscribed =
        subject !== undefined &&
        (this.options.paramsFeed?.follow(subject, req.model.embedDim, req.model.depth) ?? false);
      this.options.onReady?.(true);
      log.info(
        { runId: req.runId, peer: call.getPeer(), backend: reply.backend, paramsSubscribed },
        "worker set up",
      );
      return { ...reply, adapter: reply.adapter, paramsSubscribed };
    } catch (err) {
      // The engine drops its old model before loading the new one: after a failed setup it holds nothing.
      if (!(err instanceof CallCancelled)) {
        this.current = undefined;
        this.options.onReady?.(false);
      }
      // Weights or data that do not fit the request (a model spec the checkpoint does not have, a dataset
      // that is not there) refuse the handshake; they are not the worker failing.
      if (err instanceof Error && SETUP_INPUT_ERRORS.has(err.name))
        throw new WorkerRefusal("setup-refused", err.message);
      throw err;
    }
  }

  private async release(call: ServerUnaryCall<ReleaseRequest, ReleaseResponse>): Promise<ReleaseResponse> {
    const { runId } = decoded(call.request, "request");
    if (!this.current) return {};
    this.requireRun(runId);
    await this.serial(call, async () => {
      this.requireRun(runId);
      await this.worker.close();
      this.current = undefined;
      this.paramsClasses.clear();
      this.options.onReady?.(false);
    });
    return {};
  }

  private async setTaskState(
    call: ServerReadableStream<SetTaskStateRequest, SetTaskStateResponse>,
  ): Promise<SetTaskStateResponse> {
    let asm: TaskStateAssembler | undefined;
    await readStream<SetTaskStateRequest>(call, (raw, n) => {
      const msg = decoded(raw, `message ${n}`);
      if (asm) return asm.add(msg.part, n);
      if (msg.part?.$case !== "header")
        throw new InvalidRequestError("message 0", "the first message must be the header");
      asm = new TaskStateAssembler(msg.part.value, this.requireRun(msg.part.value.runId));
    });
    if (!asm) throw new InvalidRequestError("header", "the stream carried no messages");
    const state = asm.finish();
    const runId = asm.header.runId;
    await this.serial(call, () => {
      this.requireRun(runId);
      return this.worker.setTaskState(state);
    });
    return {};
  }

  private async covariance(call: ServerWritableStream<pb.CovarianceRequest, pb.CovarianceResponse>) {
    const r = decoded(call.request, "request");
    const dims = this.requireRun(r.runId);
    const req = {
      stateVersion: version(r.stateVersion, "state_version"),
      shards: decodeShards(r.shards, "shards", { training: false }),
      microBatch: r.microBatch || undefined,
    };
    const results = await this.serial(call, () => {
      this.requireRun(r.runId);
      return this.worker.covariance(req);
    });
    return covarianceMessages(results, dims, this.options.chunkBytes);
  }

  private async trainStep(call: ServerDuplexStream<pb.TrainStepRequest, pb.TrainStepResponse>) {
    let asm: TrainStepAssembler | undefined;
    await readStream<pb.TrainStepRequest>(call, (raw, n) => {
      const msg = decoded(raw, `message ${n}`);
      if (asm) return asm.add(msg.part, n);
      if (msg.part?.$case !== "header")
        throw new InvalidRequestError("message 0", "the first message must be the header");
      asm = new TrainStepAssembler(msg.part.value, this.requireRun(msg.part.value.runId));
    });
    if (!asm) throw new InvalidRequestError("header", "the stream carried no messages");
    let req = asm.finish(this.paramsClasses.get(asm.paramsVersion));
    const { runId, fullParams, paramsSha256 } = asm.header;
    if (!fullParams && paramsSha256.length > 0) {
      if (paramsSha256.length !== 32)
        throw new InvalidRequestError("header.params_sha256", `${paramsSha256.length} bytes, expected 32`);
      const digest = Buffer.from(paramsSha256).toString("hex");
      const published = await this.options.paramsFeed?.get(
        asm.paramsVersion,
        digest,
        PUBLISHED_PARAMS_WAIT_MS,
      );
      // Not (yet) here, or not these bytes: the coordinator resends them over gRPC.
      if (!published) throw new StaleVersionError("params", asm.paramsVersion);
      req = { ...req, params: published };
    }
    const dims = this.requireRun(runId);
    const results = await this.serial(call, () => {
      this.requireRun(runId);
      return this.worker.trainStep(req);
    });
    if ("head" in req.params) {
      this.paramsClasses.set(req.params.version, req.params.head.classes);
      // The engine keeps one parameter version; two here covers a late duplicate of the previous step.
      for (const v of [...this.paramsClasses.keys()].sort((a, b) => a - b).slice(0, -2))
        this.paramsClasses.delete(v);
    }
    return trainMessages(results, dims, GRADIENT_SLICE_FACTOR * this.options.chunkBytes);
  }

  private async evaluate(call: ServerWritableStream<pb.EvaluateRequest, pb.EvaluateResponse>) {
    const r = decoded(call.request, "request");
    this.requireRun(r.runId);
    const shards = decodeShards(r.shards, "shards", { training: false });
    const req = {
      stateVersion: version(r.stateVersion, "state_version"),
      shards,
      output: decodeEvalOutput(r.output),
    };
    const results = await this.serial(call, () => {
      this.requireRun(r.runId);
      return this.worker.evaluate(req);
    });
    const counts = new Map(shards.map((s) => [s.index, s.samples.length]));
    return evalMessages(results, counts, this.options.chunkBytes);
  }

  private requireRun(runId: string): Dims {
    if (!this.current)
      throw new WorkerRefusal("not-set-up", "this worker is not set up: run the Setup handshake first");
    if (runId !== this.current.runId) {
      throw new WorkerRefusal(
        "wrong-run",
        `request for run "${clip(runId, 80)}", but this worker is set up for run "${this.current.runId}"`,
      );
    }
    return this.current.dims;
  }

  /**
   * Runs worker calls one at a time: the engine swaps its live state per call, and a coordinator that
   * retries after a deadline may send a second call while the first still computes. A call whose client
   * gave up while it waited is skipped.
   */
  private serial<T>(call: Call, fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(() => {
      if (call.cancelled) throw new CallCancelled("the client cancelled the call before it ran");
      return fn();
    });
    this.tail = run.catch(() => undefined);
    return run;
  }

  private unary<Req, Res>(
    method: string,
    run: (call: ServerUnaryCall<Req, Res>) => Promise<Res>,
  ): handleUnaryCall<Req, Res> {
    return (call, callback) => {
      run(call).then(
        (res) => callback(null, res),
        (err) => callback(this.status(err, method, call)),
      );
    };
  }

  private reply<T>(call: Writable & Call, method: string, produce: () => Promise<Iterable<T>>): void {
    produce()
      .then((messages) =>
        writeStream(call, messages).catch((err) => {
          // The worker's own results did not fit the protocol: a worker fault (INTERNAL), not the request's.
          throw new Error(
            `the worker's reply cannot be encoded: ${err instanceof Error ? err.message : err}`,
          );
        }),
      )
      .catch((err) => call.emit("error", this.status(err, method, call)));
  }

  private status(err: unknown, method: string, call: Call): Partial<StatusObject> {
    const s = toStatus(err);
    const where = {
      method,
      peer: call.getPeer(),
      code: status[s.code ?? status.UNKNOWN],
      details: s.details,
    };
    if (s.code === status.INTERNAL) log.error({ ...where, err }, "worker call failed");
    else if (s.code !== status.ABORTED && s.code !== status.CANCELLED) log.warn(where, "worker call refused");
    return s;
  }
}

/**
 * The service definition with deserializers that return UndecodableMessage instead of throwing (grpc-js
 * would answer INTERNAL "Error deserializing request", hiding that the request was at fault).
 */
export function tolerantDefinition(definition: ServiceDefinition): ServiceDefinition {
  const out: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(definition)) {
    out[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return method.requestDeserialize(bytes);
        } catch (err) {
          return new UndecodableMessage(err instanceof Error ? err.message : String(err));
        }
      },
    };
  }
  return out;
}

/**
 * Longest status message sent. It travels in an HTTP/2 trailer, and a request can make it long (a run id or
 * a shape of megabytes): a client refuses headers beyond its limit (Node's default: 64 KiB) and the call
 * then never ends on its side.
 */
const MAX_DETAILS = 1024;

/** At most `max` characters of `s`, and never half a surrogate pair (grpc-js's encodeURI throws on one). */
function clip(s: string, max: number): string {
  const cut = s.length <= max ? s : `${s.slice(0, max)}… (${s.length - max} more characters)`;
  return cut.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, "\ufffd");
}

/**
 * What a library's `addToServer(server)` (the health service's) is given instead of the server: its
 * service is registered with tolerantDefinition, and requests that cannot be decoded are refused with
 * INVALID_ARGUMENT before its handlers see them, as ours are. Health needs no token: anyone can send it bytes.
 */
export function tolerantRegistrar(server: Server): Server {
  const registrar: Pick<Server, "addService"> = {
    addService: (definition, implementation) => {
      const guarded: UntypedServiceImplementation = {};
      for (const [name, handler] of Object.entries(implementation)) {
        guarded[name] = ((
          call: { request?: unknown; emit(e: string, s: unknown): void },
          callback?: (s: unknown) => void,
        ) => {
          if (!(call.request instanceof UndecodableMessage))
            return (handler as (...a: unknown[]) => void)(call, callback);
          const refusal = toStatus(
            new InvalidRequestError("request", `cannot be decoded: ${call.request.reason}`),
          );
          if (callback) callback(refusal);
          else call.emit("error", refusal);
        }) as UntypedHandleCall;
      }
      server.addService(tolerantDefinition(definition), guarded);
    },
  };
  return registrar as Server;
}

/** The status a failure becomes; exported for tests. */
export function toStatus(err: unknown): Partial<StatusObject> {
  const s = statusOf(err);
  return { ...s, details: clip(s.details ?? "", MAX_DETAILS) };
}

function statusOf(err: unknown): Partial<StatusObject> {
  const metadata = new Metadata();
  if (err instanceof InvalidRequestError || err instanceof TensorCodecError) {
    return { code: status.INVALID_ARGUMENT, details: `invalid request: ${err.message}`, metadata };
  }
  if (err instanceof StaleVersionError) {
    metadata.set(STALE_WHAT_KEY, err.what);
    metadata.set(STALE_VERSION_KEY, String(err.wanted));
    return { code: status.ABORTED, details: err.message, metadata };
  }
  if (err instanceof WorkerRefusal) {
    metadata.set(REASON_KEY, err.reason);
    return { code: status.FAILED_PRECONDITION, details: err.message, metadata };
  }
  // WorkerSetupError, matched by name so that serving a WorkerClient does not pull in the engine (and tfjs).
  if (err instanceof Error && err.name === "WorkerSetupError") {
    metadata.set(REASON_KEY, /before setup/.test(err.message) ? "not-set-up" : "setup-refused");
    return { code: status.FAILED_PRECONDITION, details: err.message, metadata };
  }
  // SampleIndexError (worker/data/open_dataset.ts), by name like WorkerSetupError: a shard's samples name
  // images its split does not have.
  if (err instanceof Error && err.name === "SampleIndexError")
    return {
      code: status.INVALID_ARGUMENT,
      details: `invalid request: shards.samples: ${err.message}`,
      metadata,
    };
  if (err instanceof CallCancelled) return { code: status.CANCELLED, details: err.message, metadata };
  const message = err instanceof Error ? err.message : String(err);
  return { code: status.INTERNAL, details: `worker error: ${message}`, metadata };
}

function rowsPerSlice(cols: number, chunkBytes: number): number {
  return Math.max(1, Math.floor(chunkBytes / (Math.max(cols, 1) * 4)));
}

/** The Covariance reply stream of some results (exported for the all-reduce bench's fake workers). */
export function* covarianceMessages(
  results: CovarianceResult[],
  dims: Dims,
  chunkBytes: number,
): Generator<pb.CovarianceResponse> {
  const { D } = dims;
  const step = rowsPerSlice(D, chunkBytes);
  for (const r of results) {
    for (const [block, sum] of r.sums.entries()) {
      for (let row = 0; row < D; row += step) {
        const rows = Math.min(step, D - row);
        yield {
          shardIndex: r.index,
          tokens: r.tokens,
          block,
          rowOffset: row,
          rows: encodeTensor(sum.subarray(row * D, (row + rows) * D), [rows, D], `sums[${block}]`),
        };
      }
    }
  }
}

/**
 * The TrainStep reply stream of some results: per shard one message with the summary and the gradients
 * as one flat vector (layout in compute.proto), or slices of it at most `sliceBytes` long. The engine's
 * arrays are copied as they are: whether their sizes agree with the rank and classes is the client's
 * check to make. Exported for the all-reduce bench's fake workers.
 */
export function* trainMessages(
  results: TrainStepResult[],
  dims: Dims,
  sliceBytes: number,
): Generator<pb.TrainStepResponse> {
  const { D } = dims;
  const step = Math.max(1, Math.floor(sliceBytes / 4));
  for (const r of results) {
    const flat = flatten({ Ak: r.gradAk, Av: r.gradAv, weight: r.gradHeadW, bias: r.gradHeadB });
    const summary = {
      count: r.count,
      lossSum: r.lossSum,
      correct: r.correct,
      rank: Math.round((r.gradAk[0]?.length ?? 0) / D),
      classes: r.gradHeadB.length,
    };
    for (let offset = 0; offset === 0 || offset < flat.length; offset += step) {
      const slice = flat.subarray(offset, Math.min(offset + step, flat.length));
      yield {
        shardIndex: r.index,
        summary: offset === 0 ? summary : undefined,
        offset,
        grads: encodeTensor(slice, [slice.length], "grads"),
        align: EMPTY,
      };
    }
  }
}

const EMPTY = new Uint8Array(0);

/**
 * Gradient slices are this many chunks (4 MiB by default): a shard's gradients — 0.74 MB for ViT-B/16 at
 * rank 10 — travel as one message, which is what the coordinator receives fastest.
 */
const GRADIENT_SLICE_FACTOR = 4;

/** grpc-js hands a received message to the deserializer this many bytes into a buffer of its own. */
const GRPC_FRAME_HEADER = 5;
/** TrainStepResponse.align (field 15, length-delimited) with k bytes: tag, length, k zeros. */
const ALIGN_TAG = (15 << 3) | 2;
/** Padding bytes k that move what follows by 1, 2 or 3 bytes (mod 4): 2 + k bytes in all. */
const PAD_FOR_SHIFT = [0, 3, 4, 1];

/**
 * responseSerialize of TrainStep: the message, preceded when needed by an `align` field that puts the
 * gradient bytes 4-byte aligned in a grpc-js receiver's buffer, so the coordinator reads them in place
 * (the receiver copies when they are not). Fields may come in any order on the wire, so the padding
 * goes first, and `grads.data` — the last bytes ts-proto writes — ends the message.
 */
export function serializeTrainStepResponse(msg: pb.TrainStepResponse): Buffer {
  const body = TrainStepResponse.encode(msg).finish();
  const dataBytes = msg.grads?.data.length ?? 0;
  const misaligned = (GRPC_FRAME_HEADER + body.length - dataBytes) % 4;
  if (dataBytes === 0 || misaligned === 0) return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const k = PAD_FOR_SHIFT[4 - misaligned];
  const out = Buffer.alloc(2 + k + body.length);
  out[0] = ALIGN_TAG;
  out[1] = k;
  out.set(body, 2 + k);
  return out;
}

function* evalMessages(
  results: EvalResult[],
  samples: ReadonlyMap<number, number>,
  chunkBytes: number,
): Generator<pb.EvaluateResponse> {
  for (const r of results) {
    const n = samples.get(r.index) ?? 0;
    const classes = n > 0 ? r.logits.length / n : 0;
    const step = rowsPerSlice(classes, chunkBytes);
    // At least one message per shard, so that the client sees every shard answered.
    for (let row = 0; row === 0 || row < n; row += step) {
      const rows = Math.min(step, n - row);
      yield {
        shardIndex: r.index,
        rowOffset: row,
        logits: encodeTensor(
          r.logits.subarray(row * classes, (row + rows) * classes),
          [rows, classes],
          "logits",
        ),
      };
    }
  }
}

/** Feeds every message of a client stream to `onMessage` (numbered from 0); settles at its end. */
function readStream<T>(
  call: Readable & Call,
  onMessage: (msg: T | UndecodableMessage, n: number) => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let n = 0;
    let settled = false;
    const settle = (err?: unknown) => {
      if (settled) return;
      settled = true;
      if (err === undefined) resolve();
      else reject(err);
    };
    call.on("data", (msg: T | UndecodableMessage) => {
      if (settled) return;
      try {
        onMessage(msg, n++);
      } catch (err) {
        settle(err);
      }
    });
    call.once("end", () => settle());
    call.once("cancelled", () => settle(new CallCancelled("the client cancelled the call")));
  });
}

/** Writes with backpressure: a 28 MB covariance reply is encoded slice by slice as the client takes it. */
async function writeStream<T>(call: Writable & Call, messages: Iterable<T>): Promise<void> {
  for (const msg of messages) {
    if (call.cancelled) return;
    if (!call.write(msg)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          call.off("drain", done);
          call.off("cancelled", done);
          resolve();
        };
        call.once("drain", done);
        call.once("cancelled", done);
      });
    }
  }
  call.end();
}
