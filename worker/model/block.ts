/**
 * One pre-LN transformer block (x + attn(norm1 x), then + mlp(norm2 ·)) as a forward pass that can keep
 * what its hand-written backward pass needs, and that backward pass. The backward pass computes no weight
 * gradients except those of the live adapter's A_k and A_v.
 */
import * as tf from "@tensorflow/tfjs-core";
import {
  type AttentionSaved,
  type AttentionShape,
  attentionBackward,
  attentionForward,
  type KeyValue,
  type QueryProj,
} from "./attention.js";
import {
  geluBackward,
  geluForward,
  type LayerNormSaved,
  layerNormBackward,
  layerNormForward,
} from "./fused_ops.js";
import type { FrozenLinear } from "./layers.js";
import type { ComputePolicy } from "./policy.js";

export interface BlockWeights {
  readonly norm1g: tf.Tensor1D;
  readonly norm1b: tf.Tensor1D;
  /** Query and output projection (its bias included), in the layout the model was built with. */
  readonly attn: QueryProj;
  readonly norm2g: tf.Tensor1D;
  readonly norm2b: tf.Tensor1D;
  readonly fc1: FrozenLinear;
  readonly fc2: FrozenLinear;
}

export interface BlockSaved {
  readonly ln1: LayerNormSaved;
  readonly attn: AttentionSaved;
  /** (x̂ Bᵀ)ᵀ of the live adapter, [r, B·N]. */
  readonly zT: tf.Tensor2D;
  readonly ln2: LayerNormSaved;
  /** fc1 output and its normal CDF (none where GELU is a fused kernel), for GELU's gradient. */
  readonly f: tf.Tensor2D;
  readonly cdf?: tf.Tensor2D;
}

/** Row b·N of every image of a [B·N, D] pass (the class tokens), as [B, D]. */
export function classRows(x: tf.Tensor2D, batch: number, tokens: number): tf.Tensor2D {
  const D = x.shape[1];
  if (batch === 1) return tf.slice(x, [0, 0], [1, D]);
  return tf.reshape(tf.slice(tf.reshape(x, [batch, tokens, D]), [0, 0, 0], [batch, 1, D]), [batch, D]);
}

/** The inverse of classRows for gradients: [B, D] placed at the class-token rows of zeros [B·N, D]. */
export function scatterClassRows(d: tf.Tensor2D, batch: number, tokens: number): tf.Tensor2D {
  const D = d.shape[1];
  const after: [number, number] = [0, tokens - 1];
  if (batch === 1) return tf.pad(d, [after, [0, 0]]);
  const padded = tf.pad(tf.reshape(d, [batch, 1, D]), [[0, 0], after, [0, 0]]);
  return tf.reshape(padded, [batch * tokens, D]);
}

export interface BlockForward {
  /** The block's output: every token, or with `s.queries === 1` the class tokens only ([B, D]). */
  readonly y: tf.Tensor2D;
  /** The attention input (norm1 output) over every token, [B·N, D]. */
  readonly xh: tf.Tensor2D;
  readonly saved?: BlockSaved;
}

/**
 * `x` [B·N, D]. `liveB` (the live adapter's B, [r, D]) asks for the state of a training pass. With
 * `s.queries === 1` only the class tokens pass through the attention output, the residuals and the MLP:
 * that is all the last block has to deliver.
 */
export function blockForward(
  x: tf.Tensor2D,
  w: BlockWeights,
  kv: KeyValue,
  s: AttentionShape,
  policy: ComputePolicy,
  liveB?: tf.Tensor2D,
): BlockForward {
  const ln1 = layerNormForward(x, w.norm1g, w.norm1b);
  const xh = ln1.y;
  const classOnly = s.queries !== s.tokens;
  const xq = classOnly ? classRows(xh, s.batch, s.tokens) : xh;
  const attn = attentionForward(xq, xh, w.attn, kv, s, liveB);
  const x1 = tf.add(classOnly ? classRows(x, s.batch, s.tokens) : x, attn.y) as tf.Tensor2D;
  const ln2 = layerNormForward(x1, w.norm2g, w.norm2b);
  const f = w.fc1.forward(ln2.y);
  const g = geluForward(f, policy.fastGelu);
  const y = tf.add(x1, w.fc2.forward(g.y as tf.Tensor2D)) as tf.Tensor2D;
  if (!liveB) return { y, xh };
  const saved: BlockSaved = {
    ln1: ln1.saved,
    attn: attn.saved,
    zT: attn.zT!,
    ln2: ln2.saved,
    f,
    cdf: g.cdf as tf.Tensor2D | undefined,
  };
  return { y, xh, saved };
}

/**
 * From dL/dy (rows as blockForward's y) to the live adapter's gradients (Aᵀ layout, [r, D]) and, when
 * `wantInput`, dL/dx over every token.
 */
export function blockBackward(
  dy: tf.Tensor2D,
  w: BlockWeights,
  kv: KeyValue,
  saved: BlockSaved,
  s: AttentionShape,
  policy: ComputePolicy,
  wantInput: boolean,
): { dx?: tf.Tensor2D; dAkT: tf.Tensor2D; dAvT: tf.Tensor2D } {
  const df = geluBackward(w.fc2.backward(dy), saved.f, saved.cdf, policy.fastGelu) as tf.Tensor2D;
  const dx1 = tf.add(dy, layerNormBackward(w.fc1.backward(df), w.norm2g, saved.ln2)) as tf.Tensor2D;
  const g = attentionBackward(dx1, w.attn, kv, saved.attn, saved.zT, s, policy, wantInput);
  if (!wantInput) return { dAkT: g.dAkT, dAvT: g.dAvT };
  const classOnly = s.queries !== s.tokens;
  const spread = (t: tf.Tensor2D) => (classOnly ? scatterClassRows(t, s.batch, s.tokens) : t);
  const dxh = tf.add(spread(g.dxq!), g.dxkv!) as tf.Tensor2D;
  const dx = tf.add(spread(dx1), layerNormBackward(dxh, w.norm1g, saved.ln1)) as tf.Tensor2D;
  return { dx, dAkT: g.dAkT, dAvT: g.dAvT };
}
