/**
 * Multi-head self-attention with every head in one matmul per projection ([B·N, D] × [D, D]) and the heads
 * a batch dimension of the score and weighted-sum products, with a hand-written backward pass: the layout
 * for backends that run batched matmuls with transpose flags well (policy.ts's jointHeads). A projection
 * per head would be a [B·N, D] × [D, Dh] product: narrow, a fraction of the GEMM rate, and the heads'
 * input gradients would be summed as H separate [B·N, D] tensors.
 *
 * Weights stay in timm's [out, in] layout; products take them with transposeB. The key bias is left out,
 * as in attention_per_head.ts: it adds the same constant to every score of a query's row, which softmax
 * cancels exactly.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { AttentionForwardResult, AttentionGrads, AttentionShape } from "./attention_types.js";
import { softmaxBackward } from "./fused_ops.js";

/** A block's frozen query and projection weights. */
export interface JointQueryProj {
  readonly layout: "joint";
  readonly heads: number;
  /** qkv.weight's query rows [D, D] and bias [D], both scaled by 1/√Dh (the score scale). */
  readonly wq: tf.Tensor2D;
  readonly bq: tf.Tensor1D;
  /** proj.weight [D, D] and proj.bias. */
  readonly wp: tf.Tensor2D;
  readonly projBias: tf.Tensor1D;
}

/** A block's key and value weights [D, D] (adapters folded in) and the value bias. */
export interface JointKeyValue {
  readonly layout: "joint";
  readonly wk: tf.Tensor2D;
  readonly wv: tf.Tensor2D;
  readonly bv: tf.Tensor1D;
}

/** Head-major activations: queries [B, H, Nq, Dh] (scaled), keys and values [B, H, N, Dh], probabilities [B, H, Nq, N]. */
export interface JointSaved {
  readonly layout: "joint";
  readonly q: tf.Tensor4D;
  readonly k: tf.Tensor4D;
  readonly v: tf.Tensor4D;
  readonly p: tf.Tensor4D;
}

/** [B·rows, D] → [B, H, rows, Dh]. */
function toHeads(t: tf.Tensor2D, batch: number, rows: number, heads: number): tf.Tensor4D {
  const dh = t.shape[1] / heads;
  return tf.transpose(tf.reshape(t, [batch, rows, heads, dh]), [0, 2, 1, 3]);
}

/** [B, H, rows, Dh] → [B·rows, D]. */
function fromHeads(t: tf.Tensor4D): tf.Tensor2D {
  const [batch, heads, rows, dh] = t.shape;
  return tf.reshape(tf.transpose(t, [0, 2, 1, 3]), [batch * rows, heads * dh]);
}

/**
 * Attention output for the query rows `xq` of the attention input `xh` ([B·N, D]), and with `liveB` (the
 * live adapter's B, [r, D]) zᵀ = (x̂ Bᵀ)ᵀ for the training pass.
 */
export function jointForward(
  xq: tf.Tensor2D,
  xh: tf.Tensor2D,
  qp: JointQueryProj,
  kv: JointKeyValue,
  s: AttentionShape,
  liveB?: tf.Tensor2D,
): AttentionForwardResult<JointSaved> {
  const H = qp.heads;
  const project = (x: tf.Tensor2D, w: tf.Tensor2D, bias?: tf.Tensor1D) =>
    tf.fused.matMul({ a: x, b: w, transposeB: true, bias }) as tf.Tensor2D;
  const q = toHeads(project(xq, qp.wq, qp.bq), s.batch, s.queries, H);
  const k = toHeads(project(xh, kv.wk), s.batch, s.tokens, H);
  const v = toHeads(project(xh, kv.wv, kv.bv), s.batch, s.tokens, H);
  const p = tf.softmax(tf.matMul(q, k, false, true)) as tf.Tensor4D;
  const o = fromHeads(tf.matMul(p, v));
  return {
    y: project(o, qp.wp, qp.projBias),
    saved: { layout: "joint", q, k, v, p },
    zT: liveB ? tf.matMul(liveB, xh, false, true) : undefined,
  };
}

/**
 * Backward pass from dL/dy (query rows) given `zT` = (x̂ Bᵀ)ᵀ, [r, B·N]: the live adapter's gradients and,
 * when `wantInput`, dL/dx̂ split into the query rows' part (`dxq`, [B·Nq, D]) and the rest.
 */
export function jointBackward(
  dy: tf.Tensor2D,
  qp: JointQueryProj,
  kv: JointKeyValue,
  saved: JointSaved,
  zT: tf.Tensor2D,
  s: AttentionShape,
  wantInput: boolean,
): AttentionGrads {
  const { q, k, v, p } = saved;
  const d = toHeads(tf.matMul(dy, qp.wp), s.batch, s.queries, qp.heads);
  const dv = fromHeads(tf.matMul(p, d, true, false));
  const ds = softmaxBackward(tf.matMul(d, v, false, true), p);
  const dk = fromHeads(tf.matMul(ds, q, true, false));
  // k = x̂ W_kᵀ + (x̂ Bᵀ) A_kᵀ, so dA_kᵀ = zᵀ · dk; v likewise.
  const grads: AttentionGrads = { dAkT: tf.matMul(zT, dk), dAvT: tf.matMul(zT, dv) };
  if (!wantInput) return grads;
  const dq = fromHeads(tf.matMul(ds, k));
  return {
    ...grads,
    dxq: tf.matMul(dq, qp.wq),
    dxkv: tf.add(tf.matMul(dk, kv.wk), tf.matMul(dv, kv.wv)) as tf.Tensor2D,
  };
}
