/**
 * The coordinator's side of the wire, inbound: reassembles streamed replies and checks everything a worker
 * sends before it reaches the float64 reduction — every shard sent is answered exactly once and no other,
 * every block and row arrives once, shapes follow the model, counts match the samples, all values are
 * finite. Anything else is a MalformedReplyError naming the worker and the field, so the coordinator can
 * quarantine the sender and redo its shards elsewhere.
 */
import type { CovarianceResult, EvalResult, MicroShard, TrainStepResult } from "../../common/protocol.js";
import {
  checkTensor,
  type DecodeSpec,
  Dtype,
  decodeF32,
  decodeF32Into,
  TensorCodecError,
} from "../../common/tensor_codec.js";
import type * as pb from "../../proto/gen/inflora/v1/compute.js";

export class MalformedReplyError extends Error {
  override readonly name = "MalformedReplyError";
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

export interface ReplyContext {
  readonly worker: string;
  readonly method: string;
  readonly D: number;
  readonly depth: number;
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

  add(msg: pb.CovarianceResponse): void {
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

interface TrainParts {
  summary?: pb.TrainShardSummary;
  gradAk: Float32Array[];
  gradAv: Float32Array[];
  headW?: Float32Array;
  headB?: Float32Array;
}

export class TrainReplies extends ShardReplies {
  private readonly parts = new Map<number, TrainParts>();

  /** `rank`, `classes`: of the parameters this step ran with, when the client knows them. */
  constructor(
    ctx: ReplyContext,
    shards: readonly MicroShard[],
    private rank: number | undefined,
    private classes: number | undefined,
  ) {
    super(ctx, shards);
  }

  add(msg: pb.TrainStepResponse): void {
    const { D, depth } = this.ctx;
    const shard = this.shard(msg.shardIndex);
    const at = `shard ${msg.shardIndex}`;
    let p = this.parts.get(msg.shardIndex);
    if (!p) {
      p = { gradAk: [], gradAv: [] };
      this.parts.set(msg.shardIndex, p);
    }
    const part = msg.part;
    switch (part?.$case) {
      case "summary": {
        const s = part.value;
        if (p.summary) this.fail(`${at}.summary`, "sent twice");
        if (s.count !== shard.samples.length)
          this.fail(`${at}.count`, `${s.count} for ${shard.samples.length} samples`);
        if (!Number.isFinite(s.lossSum)) this.fail(`${at}.loss_sum`, `is ${s.lossSum}`);
        if (s.correct > s.count) this.fail(`${at}.correct`, `${s.correct} of ${s.count} samples`);
        p.summary = s;
        break;
      }
      case "grads": {
        const b = part.value.block;
        if (b >= depth) this.fail(`${at}.grads.block`, `${b} outside [0, ${depth})`);
        if (p.gradAk[b]) this.fail(`${at}.grads[${b}]`, "sent twice");
        const ak = this.guard(() =>
          decodeF32(part.value.aK, { field: `${at}.grad_Ak[${b}]`, shape: [D, this.rank], finite: true }),
        );
        this.rank ??= ak.shape[1];
        p.gradAk[b] = ak.data;
        p.gradAv[b] = this.guard(
          () =>
            decodeF32(part.value.aV, { field: `${at}.grad_Av[${b}]`, shape: [D, this.rank], finite: true })
              .data,
        );
        break;
      }
      case "headGrad": {
        if (p.headW) this.fail(`${at}.head_grad`, "sent twice");
        const w = this.guard(() =>
          decodeF32(part.value.weight, {
            field: `${at}.grad_head_w`,
            shape: [this.classes, D],
            finite: true,
          }),
        );
        this.classes ??= w.shape[0];
        p.headW = w.data;
        p.headB = this.guard(
          () =>
            decodeF32(part.value.bias, { field: `${at}.grad_head_b`, shape: [this.classes], finite: true })
              .data,
        );
        break;
      }
      default:
        this.fail(`${at}.part`, "empty");
    }
  }

  finish(): TrainStepResult[] {
    this.missingShards(new Set(this.parts.keys()));
    return [...this.sent.keys()].map((index) => {
      const p = this.parts.get(index)!;
      const at = `shard ${index}`;
      if (!p.summary) this.fail(`${at}.summary`, "never arrived");
      const gap = Array.from({ length: this.ctx.depth }, (_, i) => i).filter((i) => !p.gradAk[i]);
      if (gap.length) this.fail(`${at}.grads`, `blocks ${gap.join(", ")} never arrived`);
      if (!p.headW || !p.headB) this.fail(`${at}.head_grad`, "never arrived");
      const s = p.summary;
      return {
        index,
        count: s.count,
        lossSum: s.lossSum,
        correct: s.correct,
        gradAk: p.gradAk,
        gradAv: p.gradAv,
        gradHeadW: p.headW,
        gradHeadB: p.headB,
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

  add(msg: pb.EvaluateResponse): void {
    const shard = this.shard(msg.shardIndex);
    const field = `shard ${msg.shardIndex}.logits`;
    const spec = (): DecodeSpec => ({ field, shape: [undefined, this.classes], finite: true });
    const [rows, cols] = this.guard(() => checkTensor(msg.logits, Dtype.DTYPE_F32, spec()));
    if (cols === 0) this.fail(field, "no classes");
    this.classes ??= cols;
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
