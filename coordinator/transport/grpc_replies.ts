/**
 * The coordinator's side of the wire, inbound: reassembles streamed replies and checks everything a worker
 * sends before it reaches the float64 reduction — every shard sent is answered exactly once and no other,
 * every block and row arrives once, shapes follow the model, counts match the samples, all values are
 * finite. Anything else is a MalformedReplyError naming the worker and the field, so the coordinator can
 * quarantine the sender and redo its shards elsewhere.
 */
import type { MethodDefinition, ServiceDefinition } from "@grpc/grpc-js";
import { flatElement, flatLength, unflatten } from "../../common/flat_params.js";
import { MAX_MESSAGE_BYTES } from "../../common/grpc_wire.js";
import {
  type CovarianceResult,
  type EvalResult,
  MALFORMED_REPLY,
  type MicroShard,
  type TrainStepResult,
} from "../../common/protocol.js";
import {
  checkTensor,
  type DecodeSpec,
  Dtype,
  decodeF32Into,
  TensorCodecError,
  viewF32,
} from "../../common/tensor_codec.js";
import type * as pb from "../../proto/gen/inflora/v1/compute.js";

export class MalformedReplyError extends Error {
  override readonly name = "MalformedReplyError";
  /** The pool quarantines the sender of any error with this tag. */
  readonly tag = MALFORMED_REPLY;
  constructor(
    /** The worker's name (its address, unless named otherwise). */
    readonly worker: string,
    readonly method: string,
    readonly field: string,
    readonly detail: string,
  ) {
    super(`worker ${worker}: malformed ${method} reply: ${field}: ${detail}`);
  }
}

/**
 * What a reply's bytes become when they are not protobuf for their type: the client's deserializers return
 * this instead of throwing (grpc-js would end the call with INTERNAL, hiding that the worker sent garbage),
 * and the reply check refuses it as a MalformedReplyError, which quarantines the sender.
 */
export class UndecodableReply {
  constructor(readonly reason: string) {}
}

/** The service definition with response deserializers that return UndecodableReply instead of throwing. */
export function tolerantReplies<D extends ServiceDefinition>(definition: D): D {
  const out: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(definition)) {
    out[name] = {
      ...method,
      responseDeserialize: (bytes: Buffer) => {
        try {
          return method.responseDeserialize(bytes);
        } catch (err) {
          return new UndecodableReply(err instanceof Error ? err.message : String(err));
        }
      },
    };
  }
  return out as D;
}

export interface ReplyContext {
  readonly worker: string;
  readonly method: string;
  readonly D: number;
  readonly depth: number;
  /** The channel's message-size limit (default MAX_MESSAGE_BYTES): bounds what a reply may announce. */
  readonly maxMessageBytes?: number;
}

/** Base: maps shard indices to what was sent, and turns codec errors into MalformedReplyError. */
abstract class ShardReplies {
  protected readonly sent: ReadonlyMap<number, MicroShard>;

  constructor(
    protected readonly ctx: ReplyContext,
    shards: readonly MicroShard[],
  ) {
    this.sent = new Map(shards.map((s) => [s.index, s]));
  }

  protected fail(field: string, detail: string): never {
    throw new MalformedReplyError(this.ctx.worker, this.ctx.method, field, detail);
  }

  /** The message, unless its bytes could not be decoded. */
  protected decoded<T>(msg: T | UndecodableReply): T {
    if (msg instanceof UndecodableReply) this.fail("reply", `cannot be decoded: ${msg.reason}`);
    return msg;
  }

  protected shard(index: number): MicroShard {
    return this.sent.get(index) ?? this.fail("shard_index", `shard ${index} was not requested`);
  }

  protected guard<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof TensorCodecError) this.fail(err.field, err.detail);
      throw err;
    }
  }

  protected missingShards(answered: ReadonlySet<number>): void {
    const missing = [...this.sent.keys()].filter((i) => !answered.has(i));
    if (missing.length) this.fail("shard_index", `shards ${missing.join(", ")} were not answered`);
  }
}

/** Marks rows [from, from + n) of a matrix as received; refuses overlaps and overruns. */
class RowCoverage {
  private readonly seen: Uint8Array;
  private count = 0;

  constructor(readonly rows: number) {
    this.seen = new Uint8Array(rows);
  }

  /** Returns a problem, or undefined. */
  mark(from: number, n: number): string | undefined {
    if (from + n > this.rows) return `rows ${from}…${from + n - 1} exceed the ${this.rows} rows`;
    for (let r = from; r < from + n; r++) {
      if (this.seen[r]) return `row ${r} arrived twice`;
      this.seen[r] = 1;
    }
    this.count += n;
    return undefined;
  }

  get complete(): boolean {
    return this.count === this.rows;
  }
}

export class CovarianceReplies extends ShardReplies {
  private readonly parts = new Map<number, { tokens: number; sums: Float32Array[]; rows: RowCoverage[] }>();

  add(reply: pb.CovarianceResponse | UndecodableReply): void {
    const msg = this.decoded(reply);
    const { D, depth } = this.ctx;
    const shard = this.shard(msg.shardIndex);
    const at = `shard ${msg.shardIndex}`;
    let p = this.parts.get(msg.shardIndex);
    if (!p) {
      const n = shard.samples.length;
      if (!Number.isSafeInteger(msg.tokens) || msg.tokens < n || msg.tokens % n !== 0) {
        this.fail(`${at}.tokens`, `${msg.tokens} is not a positive multiple of the ${n} samples`);
      }
      p = {
        tokens: msg.tokens,
        sums: Array.from({ length: depth }, () => new Float32Array(D * D)),
        rows: Array.from({ length: depth }, () => new RowCoverage(D)),
      };
      this.parts.set(msg.shardIndex, p);
    } else if (msg.tokens !== p.tokens) {
      this.fail(`${at}.tokens`, `${msg.tokens}, but earlier slices said ${p.tokens}`);
    }
    if (msg.block >= depth) this.fail(`${at}.block`, `${msg.block} outside [0, ${depth})`);
    const field = `${at}.sums[${msg.block}].rows`;
    const spec: DecodeSpec = { field, shape: [undefined, D], finite: true };
    const [rows] = this.guard(() => checkTensor(msg.rows, Dtype.DTYPE_F32, spec));
    const problem = p.rows[msg.block].mark(msg.rowOffset, rows);
    if (problem) this.fail(field, problem);
    this.guard(() => decodeF32Into(msg.rows, spec, p.sums[msg.block], msg.rowOffset * D));
  }

  finish(): CovarianceResult[] {
    this.missingShards(new Set(this.parts.keys()));
    return [...this.sent.keys()].map((index) => {
      const p = this.parts.get(index)!;
      const gap = p.rows.findIndex((r) => !r.complete);
      if (gap >= 0) this.fail(`shard ${index}.sums[${gap}]`, "rows missing");
      return { index, tokens: p.tokens, sums: p.sums };
    });
  }
}

interface ShardGradients {
  readonly summary: pb.TrainShardSummary;
  /** Elements of the flat vector: 2·depth·D·rank + classes·(D + 1). */
  readonly total: number;
  flat?: Float32Array;
  received: number;
}

export class TrainReplies extends ShardReplies {
  private readonly parts = new Map<number, ShardGradients>();

  /** `rank`, `classes`: of the parameters this step ran with, when the client knows them. */
  constructor(
    ctx: ReplyContext,
    shards: readonly MicroShard[],
    private rank: number | undefined,
    private classes: number | undefined,
  ) {
    super(ctx, shards);
  }

  add(reply: pb.TrainStepResponse | UndecodableReply): void {
    const msg = this.decoded(reply);
    const shard = this.shard(msg.shardIndex);
    const at = `shard ${msg.shardIndex}`;
    let p = this.parts.get(msg.shardIndex);
    if (msg.summary) {
      if (p) this.fail(`${at}.summary`, "sent twice");
      p = this.begin(at, shard, msg.summary);
      this.parts.set(msg.shardIndex, p);
    } else if (!p) {
      this.fail(`${at}.summary`, "gradients arrived before the summary");
    }
    const field = `${at}.grads`;
    const spec: DecodeSpec = { field, shape: [undefined] };
    const [n] = this.guard(() => checkTensor(msg.grads, Dtype.DTYPE_F32, spec));
    if (msg.offset !== p.received) {
      this.fail(field, `a slice at element ${msg.offset}, expected ${p.received} (slices come in order)`);
    }
    if (p.received + n > p.total) {
      const { rank, classes } = p.summary;
      this.fail(
        field,
        `elements [${p.received}, ${p.received + n}) overrun the ${p.total} of rank ${rank} and ${classes} classes`,
      );
    }
    // The common case, the whole vector in one message, is read in place; slices are gathered.
    let values: Float32Array;
    if (n === p.total) {
      values = this.guard(() => viewF32(msg.grads, spec)).data;
      p.flat = values;
    } else {
      p.flat ??= new Float32Array(p.total);
      this.guard(() => decodeF32Into(msg.grads, spec, p.flat!, p.received));
      values = p.flat.subarray(p.received, p.received + n);
    }
    this.checkFinite(at, p, values, p.received);
    p.received += n;
  }

  /** Checks a shard's summary and what it says of the gradients against the step's parameters. */
  private begin(at: string, shard: MicroShard, s: pb.TrainShardSummary): ShardGradients {
    const { D, depth } = this.ctx;
    if (s.count !== shard.samples.length)
      this.fail(`${at}.count`, `${s.count} for ${shard.samples.length} samples`);
    if (!Number.isFinite(s.lossSum)) this.fail(`${at}.loss_sum`, `is ${s.lossSum}`);
    if (s.correct > s.count) this.fail(`${at}.correct`, `${s.correct} of ${s.count} samples`);
    // Unknown parameters (a step by version only) still bound what the summary may announce before the
    // vector is allocated: a rank within the width, and a head that one message could have carried.
    const maxClasses = Math.floor((this.ctx.maxMessageBytes ?? MAX_MESSAGE_BYTES) / (4 * (D + 1)));
    if (s.rank < 1 || s.rank > D || (this.rank !== undefined && s.rank !== this.rank))
      this.fail(`${at}.rank`, `${s.rank}, expected ${this.rank ?? `1 … ${D}`} (the parameters')`);
    if (s.classes < 1 || s.classes > maxClasses || (this.classes !== undefined && s.classes !== this.classes))
      this.fail(
        `${at}.classes`,
        `${s.classes}, expected ${this.classes ?? `1 … ${maxClasses}`} (the head's)`,
      );
    this.rank = s.rank;
    this.classes = s.classes;
    return { summary: s, total: flatLength({ D, depth, rank: s.rank, classes: s.classes }), received: 0 };
  }

  /** Refuses NaN and ±Inf, naming the tensor and element (`shard 3.grad_Av[7]: element 12 is NaN`). */
  private checkFinite(at: string, p: ShardGradients, values: Float32Array, offset: number): void {
    // A float64 sum of finite float32 values stays finite, and NaN or ±Inf anywhere poisons it.
    let sum = 0;
    for (let i = 0; i < values.length; i++) sum += values[i];
    if (Number.isFinite(sum)) return;
    const i = values.findIndex((v) => !Number.isFinite(v));
    const { D, depth } = this.ctx;
    const { rank, classes } = p.summary;
    const [name, element] = flatElement(offset + i, { D, depth, rank, classes });
    this.fail(`${at}.${name}`, `element ${element} is ${values[i]}`);
  }

  finish(): TrainStepResult[] {
    this.missingShards(new Set(this.parts.keys()));
    const { D, depth } = this.ctx;
    return [...this.sent.keys()].map((index) => {
      const p = this.parts.get(index)!;
      if (p.received !== p.total)
        this.fail(`shard ${index}.grads`, `${p.received} of ${p.total} elements arrived`);
      const { rank, classes } = p.summary;
      const t = unflatten(p.flat!, { D, depth, rank, classes });
      return {
        index,
        count: p.summary.count,
        lossSum: p.summary.lossSum,
        correct: p.summary.correct,
        gradAk: t.Ak,
        gradAv: t.Av,
        gradHeadW: t.weight,
        gradHeadB: t.bias,
      };
    });
  }
}

export class EvalReplies extends ShardReplies {
  private readonly parts = new Map<number, { logits: Float32Array; rows: RowCoverage }>();

  /** `classes`: Σ head classes of the state version evaluated, when the client knows it. */
  constructor(
    ctx: ReplyContext,
    shards: readonly MicroShard[],
    private classes: number | undefined,
  ) {
    super(ctx, shards);
  }

  add(reply: pb.EvaluateResponse | UndecodableReply): void {
    const msg = this.decoded(reply);
    const shard = this.shard(msg.shardIndex);
    const field = `shard ${msg.shardIndex}.logits`;
    const spec = (): DecodeSpec => ({ field, shape: [undefined, this.classes], finite: true });
    const [rows, cols] = this.guard(() => checkTensor(msg.logits, Dtype.DTYPE_F32, spec()));
    if (cols === 0) this.fail(field, "no classes");
    if (this.classes === undefined) {
      // The width is taken from the reply only when real values back it: an empty slice can claim any.
      if (rows === 0) this.fail(field, `${cols} classes announced by a slice of no rows`);
      this.classes = cols;
    }
    let p = this.parts.get(msg.shardIndex);
    if (!p) {
      const n = shard.samples.length;
      p = { logits: new Float32Array(n * this.classes), rows: new RowCoverage(n) };
      this.parts.set(msg.shardIndex, p);
    }
    const problem = p.rows.mark(msg.rowOffset, rows);
    if (problem) this.fail(field, problem);
    this.guard(() => decodeF32Into(msg.logits, spec(), p.logits, msg.rowOffset * this.classes!));
  }

  finish(): EvalResult[] {
    this.missingShards(new Set(this.parts.keys()));
    return [...this.sent.keys()].map((index) => {
      const p = this.parts.get(index)!;
      if (!p.rows.complete) this.fail(`shard ${index}.logits`, "rows missing");
      return { index, logits: p.logits };
    });
  }
}
