/**
 * The coordinator's side of the wire, outbound: protocol objects → `inflora.v1` request messages, with the
 * large ones (task state, training parameters) cut into one message per block so that none comes near the
 * message-size limit.
 */
import type { Head } from "../../common/adapters.js";
import type { DataOptions } from "../../common/data/options.js";
import type {
  EvalOutput,
  MicroShard,
  SetupRequest,
  TaskState,
  TrainStepRequest,
} from "../../common/protocol.js";
import { encodeTensor } from "../../common/tensor_codec.js";
import * as pb from "../../proto/gen/inflora/v1/compute.js";
import {
  BadImagePolicy,
  FinalNorm,
  type DataOptions as PbDataOptions,
  type SetupRequest as PbSetupRequest,
} from "../../proto/gen/inflora/v1/setup.js";
import type { Head as PbHead, SetTaskStateRequest } from "../../proto/gen/inflora/v1/state.js";

function dataToPb(d: DataOptions): PbDataOptions {
  // `warn` is a callback and stays behind: the worker logs its own warnings.
  return {
    dataset: d.dataset,
    dataPath: d.dataPath,
    imageSize: d.imageSize,
    mean: d.mean ? [...d.mean] : [],
    std: d.std ? [...d.std] : [],
    onBadImage:
      d.onBadImage === "skip"
        ? BadImagePolicy.BAD_IMAGE_POLICY_SKIP
        : d.onBadImage === "error"
          ? BadImagePolicy.BAD_IMAGE_POLICY_ERROR
          : BadImagePolicy.BAD_IMAGE_POLICY_UNSPECIFIED,
    splitSeed: d.splitSeed,
    manifestPath: d.manifestPath,
    domains: d.domains ? [...d.domains] : [],
    threads: d.threads,
  };
}

/** `paramsSubject`: the NATS subject the coordinator publishes each step's parameters on, if it does. */
export function setupToPb(req: SetupRequest, paramsSubject?: string): PbSetupRequest {
  return {
    runId: req.runId,
    protocolVersion: req.protocolVersion,
    weightsPath: req.weightsPath,
    weightsFingerprint: req.weightsFingerprint,
    model: {
      imgSize: req.model.imgSize,
      patchSize: req.model.patchSize,
      inChans: req.model.inChans,
      embedDim: req.model.embedDim,
      depth: req.model.depth,
      numHeads: req.model.numHeads,
      mlpHidden: req.model.mlpHidden,
      finalNorm:
        req.model.finalNorm === "fresh" ? FinalNorm.FINAL_NORM_FRESH : FinalNorm.FINAL_NORM_PRETRAINED,
    },
    data: dataToPb(req.data),
    paramsSubject: paramsSubject ?? "",
  };
}

export function evalOutputToPb(output: EvalOutput | undefined): pb.EvalOutput {
  return output === "features" ? pb.EvalOutput.EVAL_OUTPUT_FEATURES : pb.EvalOutput.EVAL_OUTPUT_LOGITS;
}

export function shardsToPb(shards: readonly MicroShard[]): pb.MicroShard[] {
  return shards.map((s, k) => ({
    index: s.index,
    split: s.split === "train" ? pb.Split.SPLIT_TRAIN : pb.Split.SPLIT_TEST,
    samples: encodeTensor(s.samples, [s.samples.length], `shards[${k}].samples`),
    targets: s.targets ? encodeTensor(s.targets, [s.targets.length], `shards[${k}].targets`) : undefined,
    augment: s.augment ? { seed: s.augment.seed, task: s.augment.task, epoch: s.augment.epoch } : undefined,
  }));
}

function head(index: number, h: Head, D: number): PbHead {
  return {
    index,
    weight: encodeTensor(h.weight, [h.classes, D], `heads[${index}].weight`),
    bias: encodeTensor(h.bias, [h.classes], `heads[${index}].bias`),
  };
}

/** The SetTaskState stream: header, every finished task's blocks, the current B's blocks, the heads. */
export function* taskStateParts(state: TaskState, runId: string, D: number): Generator<SetTaskStateRequest> {
  yield {
    part: {
      $case: "header",
      value: {
        runId,
        version: state.version,
        task: state.task,
        finished: state.finished.map((a) => ({ task: a.task, rank: a.rank })),
        currentBRank: state.currentB?.rank,
        heads: state.heads.length,
      },
    },
  };
  for (const [finished, a] of state.finished.entries()) {
    const r = a.rank;
    for (let block = 0; block < a.Bk.length; block++) {
      const f = `finished[${finished}]`;
      yield {
        part: {
          $case: "adapter",
          value: {
            finished,
            block,
            bK: encodeTensor(a.Bk[block], [r, D], `${f}.Bk[${block}]`),
            bV: encodeTensor(a.Bv[block], [r, D], `${f}.Bv[${block}]`),
            aK: encodeTensor(a.Ak[block], [D, r], `${f}.Ak[${block}]`),
            aV: encodeTensor(a.Av[block], [D, r], `${f}.Av[${block}]`),
          },
        },
      };
    }
  }
  if (state.currentB) {
    const { rank, B } = state.currentB;
    for (const [block, b] of B.entries()) {
      yield {
        part: { $case: "currentB", value: { block, b: encodeTensor(b, [rank, D], `currentB.B[${block}]`) } },
      };
    }
  }
  for (const [i, h] of state.heads.entries()) yield { part: { $case: "head", value: head(i, h, D) } };
}

/**
 * The parameter messages of a step are the same for every worker: they are built and encoded once per
 * parameter object (keyed weakly, so they go with it) and the client's serializer hands out the bytes.
 * At 16 workers that is one encoding of A_t and the head per step instead of sixteen.
 */
const encoded = new WeakMap<pb.TrainStepRequest, Buffer>();
const paramMessages = new WeakMap<object, { version: number; parts: pb.TrainStepRequest[] }>();

function bytesOf(msg: pb.TrainStepRequest): Buffer {
  const u8 = pb.TrainStepRequest.encode(msg).finish();
  // A view, not a copy: the encoder's output is not reused.
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

/** requestSerialize of TrainStep: the shared bytes of a parameter message, else a fresh encoding. */
export function serializeTrainStepRequest(msg: pb.TrainStepRequest): Buffer {
  return encoded.get(msg) ?? bytesOf(msg);
}

type FullParams = Extract<TrainStepRequest["params"], { Ak: unknown }>;

function paramParts(full: FullParams, D: number): pb.TrainStepRequest[] {
  // Keyed by the object and its version: a caller that refilled the same object for a new version gets
  // a fresh encoding.
  const cached = paramMessages.get(full);
  if (cached?.version === full.version) return cached.parts;
  const rank = full.Ak[0].length / D;
  const parts: pb.TrainStepRequest[] = [];
  for (let block = 0; block < full.Ak.length; block++) {
    parts.push({
      part: {
        $case: "params",
        value: {
          block,
          aK: encodeTensor(full.Ak[block], [D, rank], `params.Ak[${block}]`),
          aV: encodeTensor(full.Av[block], [D, rank], `params.Av[${block}]`),
        },
      },
    });
  }
  parts.push({ part: { $case: "head", value: head(0, full.head, D) } });
  for (const m of parts) encoded.set(m, bytesOf(m));
  paramMessages.set(full, { version: full.version, parts });
  return parts;
}

/**
 * The TrainStep request stream: header, then (full parameters only) every block's A and the head. With
 * `sha256`, the digest of full parameters published on NATS, only the header, naming it.
 */
export function* trainStepParts(
  req: TrainStepRequest,
  runId: string,
  D: number,
  sha256?: string,
): Generator<pb.TrainStepRequest> {
  const full = "Ak" in req.params ? req.params : undefined;
  const digest = full && sha256 ? Buffer.from(sha256, "hex") : undefined;
  yield {
    part: {
      $case: "header",
      value: {
        runId,
        stateVersion: req.stateVersion,
        paramsVersion: req.params.version,
        fullParams: full !== undefined && digest === undefined,
        shards: shardsToPb(req.shards),
        paramsSha256: digest ?? new Uint8Array(0),
      },
    },
  };
  if (!full || digest) return;
  yield* paramParts(full, D);
}
