/**
 * The training objective of task t: summed cross-entropy of head t's logits against the task-local
 * targets, and its gradients w.r.t. the trainable Aᵀ (k and v, every block) and head t.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { InfLoraVit } from "./vit.js";

export interface Trainables {
  /** Per block Aᵀ [r, D] for k and v. */
  readonly AkT: readonly tf.Tensor2D[];
  readonly AvT: readonly tf.Tensor2D[];
  /** [classes, D] and [classes]. */
  readonly headW: tf.Tensor2D;
  readonly headB: tf.Tensor1D;
}

export interface StepOutput {
  readonly lossSum: number;
  readonly correct: number;
  /** Gradients in A's layout [D, r] (row-major), per block. */
  readonly gradAk: Float32Array[];
  readonly gradAv: Float32Array[];
  readonly gradHeadW: Float32Array;
  readonly gradHeadB: Float32Array;
}

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

/** Loss sum, correct count and gradients for one micro-shard; leaves no tensors behind. */
export function lossAndGrads(
  model: InfLoraVit,
  patches: Float32Array,
  count: number,
  targets: Int32Array,
  BT: readonly tf.Tensor2D[],
  p: Trainables,
): StepOutput {
  const depth = BT.length;
  const classes = p.headB.shape[0];
  const patchLen = patches.length / (count * (model.cfg.imgSize / model.cfg.patchSize) ** 2);
  let logitsKept: tf.Tensor | undefined;
  const result = tf.tidy(() => {
    const x = tf.tensor2d(patches, [patches.length / patchLen, patchLen]);
    const onehot = tf.oneHot(tf.tensor1d(targets, "int32"), classes);
    const loss = (...vars: tf.Tensor[]) => {
      const trainables: Trainables = {
        AkT: vars.slice(0, depth) as tf.Tensor2D[],
        AvT: vars.slice(depth, 2 * depth) as tf.Tensor2D[],
        headW: vars[2 * depth] as tf.Tensor2D,
        headB: vars[2 * depth + 1] as tf.Tensor1D,
      };
      const logits = headLogits(model, x, count, BT, trainables);
      logitsKept = tf.keep(logits);
      return tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits), onehot))) as tf.Scalar;
    };
    const { value, grads } = tf.valueAndGrads(loss)([...p.AkT, ...p.AvT, p.headW, p.headB]);
    const gA = grads.slice(0, 2 * depth).map((g) => tf.transpose(g));
    return { value, gA, gW: grads[2 * depth], gB: grads[2 * depth + 1] };
  });
  const predicted = tf.tidy(() => tf.argMax(logitsKept!, 1));
  const pred = predicted.dataSync();
  tf.dispose([predicted, logitsKept!]);
  let correct = 0;
  for (let i = 0; i < count; i++) if (pred[i] === targets[i]) correct++;
  const gA = result.gA.map((t) => t.dataSync() as Float32Array);
  const out: StepOutput = {
    lossSum: result.value.dataSync()[0],
    correct,
    gradAk: gA.slice(0, depth),
    gradAv: gA.slice(depth),
    gradHeadW: result.gW.dataSync() as Float32Array,
    gradHeadB: result.gB.dataSync() as Float32Array,
  };
  tf.dispose([result.value, ...result.gA, result.gW, result.gB]);
  return out;
}
