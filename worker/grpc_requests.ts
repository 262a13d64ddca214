/**
 * The worker's side of the wire: decodes requests into the transport-neutral protocol objects and refuses
 * anything malformed — wrong dtype or shape, byte lengths that do not match, non-finite parameters, targets
 * that do not match their samples, missing or repeated stream parts — with an error naming the field, so the
 * service answers INVALID_ARGUMENT instead of letting bad input reach the model.
 */
import type { Head } from "../common/adapters.js";
import type { AugmentKey } from "../common/data/types.js";
import type {
  EvalOutput,
  MicroShard,
  SetupRequest,
  TaskState,
  TrainParams,
  TrainStepRequest,
} from "../common/protocol.js";
import { decodeF32, decodeI32, type Tensor } from "../common/tensor_codec.js";
import type { FinalNorm, VitConfig } from "../common/vit_config.js";
import * as pb from "../proto/gen/inflora/v1/compute.js";
import {
  BadImagePolicy,
  FinalNorm as PbFinalNorm,
  type SetupRequest as PbSetupRequest,
} from "../proto/gen/inflora/v1/setup.js";
import type { Head as PbHead, SetTaskStateRequest, TaskStateHeader } from "../proto/gen/inflora/v1/state.js";

export class InvalidRequestError extends Error {
  override readonly name = "InvalidRequestError";
  constructor(
    readonly field: string,
    readonly detail: string,
  ) {
    super(`${field}: ${detail}`);
  }
}

function fail(field: string, detail: string): never {
  throw new InvalidRequestError(field, detail);
}

/**
 * What a message's bytes become when they are not valid protobuf for their type (truncated, wrong wire
 * types, an int64 beyond 2^53): the server's deserializer returns this instead of throwing, so the handler
 * can answer INVALID_ARGUMENT rather than grpc-js's generic INTERNAL.
 */
export class UndecodableMessage {
  constructor(readonly reason: string) {}
}

export function decoded<T>(msg: T | UndecodableMessage, field: string): T {
  if (msg instanceof UndecodableMessage) fail(field, `cannot be decoded: ${msg.reason}`);
  return msg;
}

/** Model width and depth, from the Setup the worker accepted: every tensor's shape follows from them. */
export interface Dims {
  readonly D: number;
  readonly depth: number;
}

export function dimsOf(model: VitConfig): Dims {
  return { D: model.embedDim, depth: model.depth };
}

function positiveInt(v: number, field: string): number {
  if (!Number.isSafeInteger(v) || v < 1) fail(field, `must be a positive integer, got ${v}`);
  return v;
}

function nonEmpty(s: string, field: string): string {
  if (s.trim() === "") fail(field, "must not be empty");
  return s;
}

/** A version the coordinator assigned: a non-negative integer below 2^53. */
export function version(v: number, field: string): number {
  if (!Number.isSafeInteger(v) || v < 0) fail(field, `must be a non-negative integer, got ${v}`);
  return v;
}

/** The model's final norm; unset means the checkpoint's. */
function decodeFinalNorm(v: PbFinalNorm): FinalNorm {
  switch (v) {
    case PbFinalNorm.FINAL_NORM_UNSPECIFIED:
    case PbFinalNorm.FINAL_NORM_PRETRAINED:
      return "pretrained";
    case PbFinalNorm.FINAL_NORM_FRESH:
      return "fresh";
    default:
      return fail("model.final_norm", `unknown final norm ${v}`);
  }
}

/** The Evaluate request's `output`; unset means the logits. */
export function decodeEvalOutput(v: pb.EvalOutput): EvalOutput {
  switch (v) {
    case pb.EvalOutput.EVAL_OUTPUT_UNSPECIFIED:
    case pb.EvalOutput.EVAL_OUTPUT_LOGITS:
      return "logits";
    case pb.EvalOutput.EVAL_OUTPUT_FEATURES:
      return "features";
    default:
      return fail("output", `unknown evaluation output ${v}`);
  }
}

export function decodeSetup(req: PbSetupRequest): SetupRequest {
  const m = req.model ?? fail("model", "missing");
  const model: VitConfig = {
    imgSize: positiveInt(m.imgSize, "model.img_size"),
    patchSize: positiveInt(m.patchSize, "model.patch_size"),
    inChans: positiveInt(m.inChans, "model.in_chans"),
    embedDim: positiveInt(m.embedDim, "model.embed_dim"),
    depth: positiveInt(m.depth, "model.depth"),
    numHeads: positiveInt(m.numHeads, "model.num_heads"),
    mlpHidden: positiveInt(m.mlpHidden, "model.mlp_hidden"),
    ...(decodeFinalNorm(m.finalNorm) === "fresh" ? { finalNorm: "fresh" as const } : {}),
  };
  if (model.imgSize % model.patchSize !== 0)
    fail("model.img_size", `${model.imgSize} is not a multiple of patch_size ${model.patchSize}`);
  if (model.embedDim % model.numHeads !== 0)
    fail("model.embed_dim", `${model.embedDim} is not a multiple of num_heads ${model.numHeads}`);
  const d = req.data ?? fail("data", "missing");
  if (d.mean.length !== d.std.length)
    fail("data.std", `${d.std.length} values but mean has ${d.mean.length}`);
  if (d.mean.length !== 0 && d.mean.length !== model.inChans) {
    fail("data.mean", `${d.mean.length} values for ${model.inChans} channels`);
  }
  for (const [i, v] of d.mean.entries()) {
    if (!Number.isFinite(v)) fail(`data.mean[${i}]`, `is ${v}`);
  }
  for (const [i, v] of d.std.entries()) {
    if (!(Number.isFinite(v) && v > 0)) fail(`data.std[${i}]`, `must be finite and positive, got ${v}`);
  }
  if (d.splitSeed !== undefined && !Number.isSafeInteger(d.splitSeed))
    fail("data.split_seed", `is ${d.splitSeed}`);
  const onBadImage =
    d.onBadImage === BadImagePolicy.BAD_IMAGE_POLICY_SKIP
      ? "skip"
      : d.onBadImage === BadImagePolicy.BAD_IMAGE_POLICY_ERROR
        ? "error"
        : d.onBadImage === BadImagePolicy.BAD_IMAGE_POLICY_UNSPECIFIED
          ? undefined
          : fail("data.on_bad_image", `unknown policy ${d.onBadImage}`);
  return {
    runId: nonEmpty(req.runId, "run_id"),
    protocolVersion: req.protocolVersion,
    weightsPath: nonEmpty(req.weightsPath, "weights_path"),
    weightsFingerprint: nonEmpty(req.weightsFingerprint, "weights_fingerprint"),
    model,
    data: {
      dataset: nonEmpty(d.dataset, "data.dataset"),
      dataPath: nonEmpty(d.dataPath, "data.data_path"),
      imageSize: positiveInt(d.imageSize, "data.image_size"),
      ...(d.mean.length ? { mean: d.mean, std: d.std } : {}),
      ...(onBadImage ? { onBadImage } : {}),
      ...(d.splitSeed !== undefined ? { splitSeed: d.splitSeed } : {}),
      ...(d.manifestPath !== undefined ? { manifestPath: d.manifestPath } : {}),
      ...(d.domains.length ? { domains: d.domains } : {}),
      ...(d.threads !== undefined ? { threads: d.threads } : {}),
    },
  };
}

export interface ShardRules {
  /** Training shards must carry targets. */
  readonly training: boolean;
  /** Width of the head under training, when known: targets must lie below it. */
  readonly classes?: number;
}

function decodeAugment(a: pb.AugmentKey | undefined): AugmentKey | undefined {
  if (!a) return undefined;
  // int64 / int32 on the wire: already integers; seeds beyond 2^53 were refused by the decoder.
  return { seed: a.seed, task: a.task, epoch: a.epoch };
}

function nonNegative(data: Int32Array, field: string, below?: number): void {
  for (let i = 0; i < data.length; i++) {
    if (data[i] < 0 || (below !== undefined && data[i] >= below)) {
      fail(`${field}[${i}]`, below === undefined ? `is ${data[i]}` : `is ${data[i]}, outside [0, ${below})`);
    }
  }
}

export function decodeShards(shards: pb.MicroShard[], field: string, rules: ShardRules): MicroShard[] {
  const seen = new Set<number>();
  return shards.map((s, k) => {
    const f = `${field}[${k}]`;
    if (seen.has(s.index)) fail(`${f}.index`, `shard ${s.index} appears twice`);
    seen.add(s.index);
    const split =
      s.split === pb.Split.SPLIT_TRAIN
        ? "train"
        : s.split === pb.Split.SPLIT_TEST
          ? "test"
          : fail(`${f}.split`, `unknown split ${s.split}`);
    const samples = decodeI32(s.samples, { field: `${f}.samples`, shape: [undefined] }).data;
    if (samples.length === 0) fail(`${f}.samples`, "is empty");
    nonNegative(samples, `${f}.samples`);
    let targets: Int32Array | undefined;
    if (s.targets) {
      targets = decodeI32(s.targets, { field: `${f}.targets`, shape: [samples.length] }).data;
      nonNegative(targets, `${f}.targets`, rules.classes);
    } else if (rules.training) {
      fail(`${f}.targets`, "missing: a training shard needs one target per sample");
    }
    const augment = decodeAugment(s.augment);
    return {
      index: s.index,
      split,
      samples,
      ...(rules.training && targets ? { targets } : {}),
      ...(augment ? { augment } : {}),
    };
  });
}

function f32(t: Tensor | undefined, field: string, shape: (number | undefined)[]): Float32Array {
  return decodeF32(t, { field, shape, finite: true }).data;
}

function decodeHead(h: PbHead, field: string, D: number): Head {
  const weight = decodeF32(h.weight, { field: `${field}.weight`, shape: [undefined, D], finite: true });
  const classes = weight.shape[0];
  if (classes < 1) fail(`${field}.weight`, "has no rows");
  return { classes, weight: weight.data, bias: f32(h.bias, `${field}.bias`, [classes]) };
}

function checkRank(rank: number, field: string, D: number): number {
  if (!Number.isSafeInteger(rank) || rank < 1 || rank > D) fail(field, `rank ${rank} outside [1, ${D}]`);
  return rank;
}

/**
 * Most heads or finished tasks a task state may announce, far beyond any benchmark's tasks. The message-size
 * limit bounds a stream's memory per message, not what a header announces: a million heads must not make us
 * wait for them, and a 16 MiB header of 2.7 million finished tasks would take some 660 MiB of heap to track.
 */
const MAX_ANNOUNCED = 100_000;

/**
 * Collects a SetTaskState stream: the header announces every part; each must then arrive exactly once. A
 * stream that ends early, repeats a part or sends one that was not announced is refused.
 */
export class TaskStateAssembler {
  /** The finished tasks' adapters as their blocks arrive. */
  private readonly finished: {
    task: number;
    rank: number;
    Bk: Float32Array[];
    Bv: Float32Array[];
    Ak: Float32Array[];
    Av: Float32Array[];
  }[];
  private readonly currentB?: { rank: number; B: Float32Array[] };
  private readonly heads: (Head | undefined)[];
  readonly version: number;

  constructor(
    readonly header: TaskStateHeader,
    private readonly dims: Dims,
  ) {
    this.version = version(header.version, "header.version");
    if (header.finished.length > MAX_ANNOUNCED)
      fail("header.finished", `${header.finished.length} finished tasks announced`);
    this.finished = header.finished.map((f, i) => ({
      task: f.task,
      rank: checkRank(f.rank, `header.finished[${i}].rank`, dims.D),
      Bk: [],
      Bv: [],
      Ak: [],
      Av: [],
    }));
    if (header.currentBRank !== undefined) {
      this.currentB = { rank: checkRank(header.currentBRank, "header.current_b_rank", dims.D), B: [] };
    }
    if (header.heads > MAX_ANNOUNCED) fail("header.heads", `${header.heads} heads announced`);
    this.heads = new Array(header.heads).fill(undefined);
  }

  add(part: SetTaskStateRequest["part"], n: number): void {
    const { D, depth } = this.dims;
    const block = (b: number, field: string) => {
      if (b >= depth) fail(field, `block ${b} outside [0, ${depth})`);
      return b;
    };
    switch (part?.$case) {
      case "header":
        fail(`message ${n}`, "a second header");
        break;
      case "adapter": {
        const a = part.value;
        const f =
          this.finished[a.finished] ??
          fail(`message ${n}.adapter.finished`, `no finished task at position ${a.finished}`);
        const b = block(a.block, `message ${n}.adapter.block`);
        if (f.Bk[b]) fail(`message ${n}.adapter`, `finished[${a.finished}] block ${b} sent twice`);
        const field = `adapter[finished ${a.finished}, block ${b}]`;
        f.Bk[b] = f32(a.bK, `${field}.b_k`, [f.rank, D]);
        f.Bv[b] = f32(a.bV, `${field}.b_v`, [f.rank, D]);
        f.Ak[b] = f32(a.aK, `${field}.a_k`, [D, f.rank]);
        f.Av[b] = f32(a.aV, `${field}.a_v`, [D, f.rank]);
        break;
      }
      case "currentB": {
        const c = this.currentB ?? fail(`message ${n}.current_b`, "the header announced no current B");
        const b = block(part.value.block, `message ${n}.current_b.block`);
        if (c.B[b]) fail(`message ${n}.current_b`, `block ${b} sent twice`);
        c.B[b] = f32(part.value.b, `current_b[block ${b}].b`, [c.rank, D]);
        break;
      }
      case "head": {
        const i = part.value.index;
        if (i >= this.heads.length)
          fail(`message ${n}.head.index`, `${i}, but the header announced ${this.heads.length} heads`);
        if (this.heads[i]) fail(`message ${n}.head`, `head ${i} sent twice`);
        this.heads[i] = decodeHead(part.value, `head[${i}]`, D);
        break;
      }
      default:
        fail(`message ${n}`, "carries no part");
    }
  }

  finish(): TaskState {
    const { depth } = this.dims;
    const missing = (arr: unknown[], n: number) =>
      Array.from({ length: n }, (_, i) => i).filter((i) => !arr[i]);
    const finished = this.finished.map((f, i) => {
      const gap = missing(f.Bk, depth);
      if (gap.length) fail(`adapter[finished ${i}]`, `blocks ${gap.join(", ")} never arrived`);
      return { task: f.task, rank: f.rank, Bk: f.Bk, Bv: f.Bv, Ak: f.Ak, Av: f.Av };
    });
    if (this.currentB) {
      const gap = missing(this.currentB.B, depth);
      if (gap.length) fail("current_b", `blocks ${gap.join(", ")} never arrived`);
    }
    const headGap = missing(this.heads, this.heads.length);
    if (headGap.length) fail("head", `heads ${headGap.join(", ")} never arrived`);
    return {
      version: this.version,
      task: this.header.task,
      finished,
      ...(this.currentB ? { currentB: this.currentB } : {}),
      heads: this.heads as Head[],
    };
  }
}

/**
 * Collects a TrainStep request stream: the header (shards, versions), then — with full_params — every
 * block's A and the head.
 */
export class TrainStepAssembler {
  private rank?: number;
  private readonly Ak: Float32Array[] = [];
  private readonly Av: Float32Array[] = [];
  private head?: Head;
  readonly stateVersion: number;
  readonly paramsVersion: number;
  private readonly shards: pb.MicroShard[];

  constructor(
    readonly header: pb.TrainStepHeader,
    private readonly dims: Dims,
  ) {
    this.stateVersion = version(header.stateVersion, "header.state_version");
    this.paramsVersion = version(header.paramsVersion, "header.params_version");
    this.shards = header.shards;
  }

  add(part: pb.TrainStepRequest["part"], n: number): void {
    const { D, depth } = this.dims;
    if (!this.header.fullParams && part?.$case !== "header") {
      fail(`message ${n}`, "parameters sent, but the header says full_params = false");
    }
    switch (part?.$case) {
      case "header":
        fail(`message ${n}`, "a second header");
        break;
      case "params": {
        const b = part.value.block;
        if (b >= depth) fail(`message ${n}.params.block`, `block ${b} outside [0, ${depth})`);
        if (this.Ak[b]) fail(`message ${n}.params`, `block ${b} sent twice`);
        const field = `params[block ${b}]`;
        const ak = decodeF32(part.value.aK, { field: `${field}.a_k`, shape: [D, this.rank], finite: true });
        this.rank ??= checkRank(ak.shape[1], `${field}.a_k`, D);
        this.Ak[b] = ak.data;
        this.Av[b] = f32(part.value.aV, `${field}.a_v`, [D, this.rank]);
        break;
      }
      case "head":
        if (this.head) fail(`message ${n}.head`, "sent twice");
        this.head = decodeHead(part.value, "head", D);
        break;
      default:
        fail(`message ${n}`, "carries no part");
    }
  }

  /** `knownClasses`: the head width of `params_version` when the worker already holds it. */
  finish(knownClasses: number | undefined): TrainStepRequest {
    const { depth } = this.dims;
    let params: TrainParams | { version: number } = { version: this.paramsVersion };
    let classes = knownClasses;
    if (this.header.fullParams) {
      const gap = Array.from({ length: depth }, (_, i) => i).filter((i) => !this.Ak[i]);
      if (gap.length) fail("params", `blocks ${gap.join(", ")} never arrived`);
      const head = this.head ?? fail("head", "never arrived");
      params = { version: this.paramsVersion, Ak: this.Ak, Av: this.Av, head };
      classes = head.classes;
    }
    return {
      stateVersion: this.stateVersion,
      params,
      shards: decodeShards(this.shards, "header.shards", { training: true, classes }),
    };
  }
}
