/**
 * The training objective of task t: summed cross-entropy of head t's logits against the task-local
 * targets, and its gradients w.r.t. the trainable Aᵀ (k and v, every block) and head t.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { TrainStepResult } from "../../common/protocol.js";
import { gridSize } from "../../common/vit_config.js";
import type { InfLoraVit } from "./vit.js";
import { type PassResult, trainingPass } from "./vit_backprop.js";

export interface Trainables {
  /** Per block Aᵀ [r, D] for k and v. */
  readonly AkT: readonly tf.Tensor2D[];
  readonly AvT: readonly tf.Tensor2D[];
  /** [classes, D] and [classes]. */
  readonly headW: tf.Tensor2D;
  readonly headB: tf.Tensor1D;
}

/** A micro-shard's reply without its index and image count (the engine adds those). */
export type ShardGradients = Omit<TrainStepResult, "index" | "count">;

/** Logits of head t for a micro-batch with the live adapter. */
export function headLogits(
  model: InfLoraVit,
  patches: tf.Tensor2D,
  count: number,
  BT: readonly tf.Tensor2D[],
  p: Trainables,
): tf.Tensor2D {
  const feats = model.features(patches, count, { adapter: { BT, AkT: p.AkT, AvT: p.AvT } });
  return tf.add(tf.matMul(feats, p.headW, false, true), p.headB);
}

/** Float64 running sums of a micro-shard's gradients, in the layouts the reply carries. */
class GradientSums {
  lossSum = 0;
  correct = 0;
  readonly ak: Float64Array[];
  readonly av: Float64Array[];
  readonly headW: Float64Array;
  readonly headB: Float64Array;

  constructor(
    depth: number,
    private readonly D: number,
    private readonly rank: number,
    classes: number,
  ) {
    this.ak = Array.from({ length: depth }, () => new Float64Array(D * rank));
    this.av = Array.from({ length: depth }, () => new Float64Array(D * rank));
    this.headW = new Float64Array(classes * D);
    this.headB = new Float64Array(classes);
  }

  /** Adds a gradient given in Aᵀ layout [r, D] to a sum in A layout [D, r]. */
  addTransposed(acc: Float64Array, gT: Float32Array): void {
    const { D, rank } = this;
    for (let k = 0; k < rank; k++) for (let j = 0; j < D; j++) acc[j * rank + k] += gT[k * D + j];
  }

  add(acc: Float64Array, g: Float32Array): void {
    for (let j = 0; j < acc.length; j++) acc[j] += g[j];
  }

  output(): ShardGradients {
    return {
      lossSum: this.lossSum,
      correct: this.correct,
      gradAk: this.ak.map((a) => Float32Array.from(a)),
      gradAv: this.av.map((a) => Float32Array.from(a)),
      gradHeadW: Float32Array.from(this.headW),
      gradHeadB: Float32Array.from(this.headB),
    };
  }
}

/**
 * Loss sum, correct count and gradients for one micro-shard; leaves no tensors behind. Where the compute
 * policy runs images one at a time (wasm) or caps the images per pass (CPU backends, large models), the
 * passes go through in order and their gradients are summed in float64, so a micro-shard's result does not
 * depend on anything but its images and the backend. Each pass reads back one flat vector (flatPassResult)
 * and nothing else: on a GPU the forward and backward passes run without a host sync.
 */
export async function lossAndGrads(
  model: InfLoraVit,
  patches: Float32Array,
  count: number,
  targets: Int32Array,
  BT: readonly tf.Tensor2D[],
  p: Trainables,
): Promise<ShardGradients> {
  const { cfg } = model;
  const depth = BT.length;
  const classes = p.headB.shape[0];
  const D = cfg.embedDim;
  const rank = BT[0].shape[1];
  const rowsPerImage = gridSize(cfg) ** 2;
  const patchLen = patches.length / (count * rowsPerImage);
  const view = model.internals({ BT, AkT: p.AkT, AvT: p.AvT });
  const per = view.policy.perImage ? 1 : Math.min(count, view.policy.maxTrainImagesPerPass);
  const sums = new GradientSums(depth, D, rank, classes);
  for (let start = 0; start < count; start += per) {
    const n = Math.min(per, count - start);
    const onehot = new Float32Array(n * classes);
    for (let b = 0; b < n; b++) onehot[b * classes + targets[start + b]] = 1;
    const flat = tf.tidy(() => {
      const rows = patches.subarray(start * rowsPerImage * patchLen, (start + n) * rowsPerImage * patchLen);
      const x = tf.tensor2d(rows, [n * rowsPerImage, patchLen]);
      return flatPassResult(trainingPass(view, x, n, tf.tensor2d(onehot, [n, classes]), p.headW, p.headB));
    });
    const v = (await flat.data()) as Float32Array;
    flat.dispose();
    let at = 0;
    const next = (len: number) => {
      at += len;
      return v.subarray(at - len, at);
    };
    sums.lossSum += next(1)[0];
    const logits = next(n * classes);
    for (let b = 0; b < n; b++) {
      if (argMax(logits.subarray(b * classes, (b + 1) * classes)) === targets[start + b]) sums.correct++;
    }
    for (let i = 0; i < depth; i++) sums.addTransposed(sums.ak[i], next(rank * D));
    for (let i = 0; i < depth; i++) sums.addTransposed(sums.av[i], next(rank * D));
    sums.add(sums.headW, next(classes * D));
    sums.add(sums.headB, next(classes));
  }
  return sums.output();
}

/**
 * A pass's results end to end in one vector, the order lossAndGrads reads them in: loss sum, logits,
 * dAkᵀ and dAvᵀ of every block, head weight and bias gradients. Concatenation copies values exactly.
 */
function flatPassResult(out: PassResult): tf.Tensor1D {
  const parts = [out.lossSum, out.logits, ...out.dAkT, ...out.dAvT, out.dHeadW, out.dHeadB];
  return tf.concat(parts.map((t) => tf.reshape(t, [-1]))) as tf.Tensor1D;
}

/** Index of the first largest entry, as tf.argMax picks it. */
function argMax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}
