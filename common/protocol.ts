/**
 * What the coordinator and its workers say to each other, transport-neutral. The in-process transport
 * passes these objects directly; the gRPC transport encodes the same fields. Workers are stateless
 * compute: everything they hold is keyed by a version the coordinator gave.
 */

import type { AdapterSet, Head } from "./adapters.js";
import type { DataOptions } from "./data/options.js";
import type { AugmentKey, Split } from "./data/types.js";
import type { VitConfig } from "./vit_config.js";

export const PROTOCOL_VERSION = 2;

/** Sent once: what to load. The worker opens the weights and the data from its own mounts. */
export interface SetupRequest {
  readonly runId: string;
  readonly protocolVersion: number;
  readonly weightsPath: string;
  /** SHA-256 of the base weights file; the worker refuses a different file. */
  readonly weightsFingerprint: string;
  readonly model: VitConfig;
  readonly data: DataOptions;
}

/** What WebGPU tells of an adapter, as a worker reports it (run.json, worker_joined, the info series, the log). */
export interface GpuAdapter {
  readonly vendor: string;
  readonly architecture: string;
  readonly device: string;
  readonly description: string;
  /** True for CPU implementations (lavapipe/llvmpipe, SwiftShader): never chosen unless forced. */
  readonly software: boolean;
  /** With `--gpu N` (or spread by `train --workers N`): the index among the hardware adapters taken. */
  readonly gpu?: number;
}

export interface SetupReply {
  readonly workerId: string;
  readonly protocolVersion: number;
  readonly weightsFingerprint: string;
  readonly backend: string;
  readonly device: string;
  /** The WebGPU adapter the worker computes on (backend `webgpu` only). */
  readonly adapter?: GpuAdapter;
  /** What the transport tells about this worker, for the event log (how its parameters travel, …). */
  readonly transport?: Readonly<Record<string, string | number | boolean>>;
}

/**
 * The frozen part of the model for one phase: adapters folded into k/v, the B being trained (if any), the
 * heads used by evaluation. Changes a few times per task.
 */
export interface TaskState {
  readonly version: number;
  readonly task: number;
  /** Finished tasks' adapters, each with its task (a finished adapter never changes once sent). */
  readonly finished: (AdapterSet & { readonly task: number })[];
  /** The current task's designed B per block ([r, D]), shared by k and v; absent outside training. */
  readonly currentB?: { readonly rank: number; readonly B: Float32Array[] };
  /** Heads of every task whose logits evaluation concatenates. */
  readonly heads: Head[];
}

/** The trainable parameters of the current task; changes every step. */
export interface TrainParams {
  readonly version: number;
  /** Per block A [D, r] for k and v. */
  readonly Ak: Float32Array[];
  readonly Av: Float32Array[];
  readonly head: Head;
}

/** A slice of a global batch; reductions run in micro-shard order, whichever worker computed what. */
export interface MicroShard {
  readonly index: number;
  readonly split: Split;
  /** Dataset sample indices (file order of the split). */
  readonly samples: Int32Array;
  /** Targets inside the current head (label − classes of earlier tasks); training only. */
  readonly targets?: Int32Array;
  /** Training transform with this key; absent: test transform. */
  readonly augment?: AugmentKey;
}

export interface CovarianceRequest {
  readonly stateVersion: number;
  readonly shards: MicroShard[];
  /**
   * Largest forward pass in images (absent or 0: the whole shard). A shard's sums accumulate in float64
   * across its passes, so its result depends only on the shard and this number, never on the worker.
   */
  readonly microBatch?: number;
}

export interface CovarianceResult {
  readonly index: number;
  readonly tokens: number;
  /** Per block Σ x xᵀ over the shard's tokens (float32, [D, D]). */
  readonly sums: Float32Array[];
}

export interface TrainStepRequest {
  readonly stateVersion: number;
  /** Full parameters, or only their version when the worker is known to hold them. */
  readonly params: TrainParams | { readonly version: number };
  readonly shards: MicroShard[];
}

export interface TrainStepResult {
  readonly index: number;
  readonly count: number;
  readonly lossSum: number;
  readonly correct: number;
  /** Gradients of the shard's summed loss: per block [D, r] for A_k and A_v, then the head. */
  readonly gradAk: Float32Array[];
  readonly gradAv: Float32Array[];
  readonly gradHeadW: Float32Array;
  readonly gradHeadB: Float32Array;
}

/**
 * What an evaluation returns per sample: the logits under the state's heads, or the final-norm class-token
 * features (classifier alignment's class statistics; the state need carry no heads).
 */
export type EvalOutput = "logits" | "features";

export interface EvalRequest {
  readonly stateVersion: number;
  readonly shards: MicroShard[];
  /** Absent: "logits". */
  readonly output?: EvalOutput;
}

export interface EvalResult {
  readonly index: number;
  /** Row-major [samples, Σ head classes], or [samples, D] when the request asked for "features". */
  readonly logits: Float32Array;
}

/** Thrown (or sent as a status) when a request names a state or parameter version the worker lacks. */
export class StaleVersionError extends Error {
  constructor(
    readonly what: "state" | "params",
    readonly wanted: number,
  ) {
    super(`worker lacks ${what} version ${wanted}`);
  }
}

/**
 * The tag of errors that mean a worker broke the protocol (a malformed reply): the pool quarantines the
 * sender instead of retrying it. A tag, not a class, so any transport's error class can carry it.
 */
export const MALFORMED_REPLY = "malformed-reply";

export function isMalformedReply(err: unknown): boolean {
  return (err as { tag?: unknown } | null)?.tag === MALFORMED_REPLY;
}

/**
 * How the caller may end a compute call early: the pool aborts the slower copy of a shard it re-issued
 * (docs/design.md, "Stragglers"). A transport that can cancels the call; one that cannot lets it finish,
 * and the caller ignores the answer.
 */
export interface CallControl {
  readonly signal?: AbortSignal;
}

/** One worker as the coordinator sees it, whatever the transport. */
export interface WorkerClient {
  readonly name: string;
  setup(req: SetupRequest): Promise<SetupReply>;
  setTaskState(state: TaskState): Promise<void>;
  covariance(req: CovarianceRequest, control?: CallControl): Promise<CovarianceResult[]>;
  trainStep(req: TrainStepRequest, control?: CallControl): Promise<TrainStepResult[]>;
  evaluate(req: EvalRequest, control?: CallControl): Promise<EvalResult[]>;
  close(): Promise<void>;
}
