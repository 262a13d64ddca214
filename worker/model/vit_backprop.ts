/**
 * One training pass (forward and hand-written backward) of the InfLoRA objective over a group of images:
 * summed cross-entropy of head t's logits and its gradients w.r.t. the live adapter's A_k, A_v (every
 * block) and head t. No tfjs autodiff: each block keeps only what its backward pass reads, and the
 * backward pass frees a block's state as soon as it is done with it.
 */
import * as tf from "@tensorflow/tfjs-core";
import { numTokens } from "../../common/vit_config.js";
import { type BlockSaved, blockBackward, blockForward } from "./block.js";
import { layerNormBackward, layerNormForward } from "./fused_ops.js";
import { matMulT } from "./policy.js";
import { disposeAll, tidyAll } from "./scope.js";
import { embedTokens, shapeFor, type VitInternals } from "./vit.js";

export interface PassResult {
  readonly lossSum: tf.Scalar;
  readonly logits: tf.Tensor2D;
  /** Per block, Aᵀ layout [r, D]. */
  readonly dAkT: tf.Tensor2D[];
  readonly dAvT: tf.Tensor2D[];
  readonly dHeadW: tf.Tensor2D;
  readonly dHeadB: tf.Tensor1D;
}

/** `onehot` [B, classes] float32; `headW` [classes, D], `headB` [classes]. Call inside tf.tidy. */
export function trainingPass(
  m: VitInternals,
  patchRows: tf.Tensor2D,
  batch: number,
  onehot: tf.Tensor2D,
  headW: tf.Tensor2D,
  headB: tf.Tensor1D,
): PassResult {
  const { policy, blocks, fold } = m;
  const depth = blocks.length;
  const N = numTokens(m.cfg);
  const saved: BlockSaved[] = [];
  let x = embedTokens(m.cfg, m, patchRows, batch);
  for (let i = 0; i < depth; i++) {
    const s = shapeFor(i, depth, batch, N);
    const input = x;
    const r = tidyAll(() => {
      const f = blockForward(input, blocks[i], fold.kv[i], s, policy, fold.B[i]);
      return { y: f.y, saved: f.saved! };
    });
    input.dispose();
    saved.push(r.saved);
    x = r.y;
  }
  // x: the last block's class tokens, [B, D].
  const fin = layerNormForward(x, m.normG, m.normB, m.normEps);
  const logits = tf.add(matMulT(fin.y, headW, false, true, policy), headB) as tf.Tensor2D;
  const lossSum = tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits), onehot))) as tf.Scalar;
  const dLogits = tf.sub(tf.softmax(logits), onehot) as tf.Tensor2D;
  const dHeadW = matMulT(dLogits, fin.y, true, false, policy);
  const dHeadB = tf.sum(dLogits, 0) as tf.Tensor1D;
  let dx = layerNormBackward(tf.matMul(dLogits, headW), m.normG, fin.saved);
  const dAkT: tf.Tensor2D[] = new Array(depth);
  const dAvT: tf.Tensor2D[] = new Array(depth);
  for (let i = depth - 1; i >= 0; i--) {
    const s = shapeFor(i, depth, batch, N);
    const dy = dx;
    const g = tidyAll(() => blockBackward(dy, blocks[i], fold.kv[i], saved[i], s, policy, i > 0));
    dy.dispose();
    disposeAll(saved[i]);
    dAkT[i] = g.dAkT;
    dAvT[i] = g.dAvT;
    // Block 0's input gradient is never needed: nothing below it is trained.
    if (g.dx) dx = g.dx;
  }
  return { lossSum, logits, dAkT, dAvT, dHeadW, dHeadB };
}
