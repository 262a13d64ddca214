/**
 * Multi-head self-attention, head by head, with a hand-written backward pass: the layout for wasm
 * (policy.ts's jointHeads off).
 *
 * Weights are split per head when they are loaded, so no activation is ever sliced into heads (on wasm a
 * Slice reads its whole input back). Each head's keys are produced already transposed (kᵀ = W_k,h x̂ᵀ), so
 * with one image per pass every product is a plain 2-D matmul — the only kind wasm runs on XNNPACK. With
 * several images per pass the scores and the weighted sum are batched matmuls over the images.
 *
 * Queries may come from a subset of the rows: the last block only needs its class token's output, so it
 * asks for one query row per image while keys and values still cover every token.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { AttentionForwardResult, AttentionGrads, AttentionShape } from "./attention_types.js";
import { softmaxBackward } from "./fused_ops.js";
import { type ComputePolicy, matMulT } from "./policy.js";

/** Frozen per-head weights of the query and of the output projection. */
export interface QueryProjHead {
  /** [D, Dh] with the 1/√Dh score scale folded in, and the scaled bias [Dh]. */
  readonly wqT: tf.Tensor2D;
  readonly bq: tf.Tensor1D;
  /** [Dh, D], scaled likewise: the backward pass's dx̂ += dq · W_q,h. */
  readonly wq: tf.Tensor2D;
  /** This head's rows of projᵀ, [Dh, D], and its columns of proj, [D, Dh]. */
  readonly wpT: tf.Tensor2D;
  readonly wp: tf.Tensor2D;
}

/**
 * Per-head key and value weights with adapters folded in. There is no key bias: it adds the same constant
 * q·b_k to every score of a query's row, which softmax cancels exactly, and it has no gradient.
 */
export interface KeyValueHead {
  /** [Dh, D]: kᵀ = wk · x̂ᵀ, and dx̂ += dk · wk. */
  readonly wk: tf.Tensor2D;
  /** [D, Dh] and bias [Dh]: v = x̂ · wvT + bv. */
  readonly wvT: tf.Tensor2D;
  readonly bv: tf.Tensor1D;
  /** [Dh, D]: dx̂ += dv · wv. */
  readonly wv: tf.Tensor2D;
}

/** A block's frozen query and projection weights, head by head. */
export interface PerHeadQueryProj {
  readonly layout: "perHead";
  readonly heads: readonly QueryProjHead[];
  readonly projBias: tf.Tensor1D;
}

/** A block's key and value weights, head by head. */
export interface PerHeadKeyValue {
  readonly layout: "perHead";
  readonly heads: readonly KeyValueHead[];
}

export interface PerHeadSaved {
  readonly layout: "perHead";
  readonly heads: HeadSaved[];
}

/** What one head's backward pass needs. With batch > 1 these are 3-D, image first. */
export interface HeadSaved {
  /** [Nq, Dh] scaled queries. */
  readonly q: tf.Tensor;
  /** [Dh, N] keys, transposed. */
  readonly kT: tf.Tensor;
  /** [N, Dh] values. */
  readonly v: tf.Tensor;
  /** [Nq, N] attention probabilities. */
  readonly p: tf.Tensor;
}

function headForward(
  xq: tf.Tensor2D,
  xh: tf.Tensor2D,
  xhT: tf.Tensor2D,
  qp: QueryProjHead,
  kv: KeyValueHead,
  s: AttentionShape,
): { o: tf.Tensor2D; saved: HeadSaved } {
  let q: tf.Tensor = tf.fused.matMul({ a: xq, b: qp.wqT, bias: qp.bq });
  let kT: tf.Tensor = tf.matMul(kv.wk, xhT);
  let v: tf.Tensor = tf.fused.matMul({ a: xh, b: kv.wvT, bias: kv.bv });
  const dh = kv.wk.shape[0];
  if (s.batch > 1) {
    q = tf.reshape(q, [s.batch, s.queries, dh]);
    kT = tf.transpose(tf.reshape(kT, [dh, s.batch, s.tokens]), [1, 0, 2]);
    v = tf.reshape(v, [s.batch, s.tokens, dh]);
  }
  const p = tf.softmax(tf.matMul(q, kT));
  const pv = tf.matMul(p, v);
  const o = (s.batch > 1 ? tf.reshape(pv, [s.batch * s.queries, dh]) : pv) as tf.Tensor2D;
  return { o, saved: { q, kT, v, p } };
}

function headBackward(
  dOut: tf.Tensor2D,
  saved: HeadSaved,
  s: AttentionShape,
  policy: ComputePolicy,
  wantDq: boolean,
): { dq?: tf.Tensor2D; dk: tf.Tensor2D; dv: tf.Tensor2D } {
  const dh = dOut.shape[1];
  const d = s.batch > 1 ? tf.reshape(dOut, [s.batch, s.queries, dh]) : dOut;
  const { q, kT, v, p } = saved;
  const dv = matMulT(p, d, true, false, policy);
  const dp = matMulT(d, v, false, true, policy);
  const ds = softmaxBackward(dp, p);
  const dk = matMulT(ds, q, true, false, policy);
  const flat = (t: tf.Tensor, rows: number) =>
    (s.batch > 1 ? tf.reshape(t, [s.batch * rows, dh]) : t) as tf.Tensor2D;
  return {
    dq: wantDq ? flat(matMulT(ds, kT, false, true, policy), s.queries) : undefined,
    dk: flat(dk, s.tokens),
    dv: flat(dv, s.tokens),
  };
}

/**
 * Attention output for the query rows `xq` of the attention input `xh` ([B·N, D]), and with `liveB` (the
 * live adapter's B, [r, D]) zᵀ = (x̂ Bᵀ)ᵀ for the training pass.
 */
export function perHeadForward(
  xq: tf.Tensor2D,
  xh: tf.Tensor2D,
  qp: PerHeadQueryProj,
  kv: PerHeadKeyValue,
  s: AttentionShape,
  liveB?: tf.Tensor2D,
): AttentionForwardResult<PerHeadSaved> {
  const xhT = tf.transpose(xh) as tf.Tensor2D;
  const parts: tf.Tensor2D[] = [];
  const saved: HeadSaved[] = [];
  for (let h = 0; h < qp.heads.length; h++) {
    const r = headForward(xq, xh, xhT, qp.heads[h], kv.heads[h], s);
    saved.push(r.saved);
    // The projection is a sum over heads of o_h · projᵀ_h: no concatenation of head outputs needed.
    const bias = h === 0 ? qp.projBias : undefined;
    parts.push(tf.fused.matMul({ a: r.o, b: qp.heads[h].wpT, bias }) as tf.Tensor2D);
  }
  return {
    y: parts.length === 1 ? parts[0] : (tf.addN(parts) as tf.Tensor2D),
    saved: { layout: "perHead", heads: saved },
    zT: liveB ? tf.matMul(liveB, xhT) : undefined,
  };
}

/**
 * Backward pass from dL/dy (query rows) given `zT` = (x̂ Bᵀ)ᵀ, [r, B·N]: the live adapter's gradients and,
 * when `wantInput`, dL/dx̂ split into the query rows' part (`dxq`, [B·Nq, D]) and the rest.
 */
export function perHeadBackward(
  dy: tf.Tensor2D,
  qp: PerHeadQueryProj,
  kv: PerHeadKeyValue,
  saved: PerHeadSaved,
  zT: tf.Tensor2D,
  s: AttentionShape,
  policy: ComputePolicy,
  wantInput: boolean,
): AttentionGrads {
  const akParts: tf.Tensor2D[] = [];
  const avParts: tf.Tensor2D[] = [];
  const qTerms: tf.Tensor2D[] = [];
  const kvTerms: tf.Tensor2D[] = [];
  for (let h = 0; h < qp.heads.length; h++) {
    const g = headBackward(tf.matMul(dy, qp.heads[h].wp), saved.heads[h], s, policy, wantInput);
    // k = x̂ W_kᵀ + (x̂ Bᵀ) A_kᵀ, so dA_kᵀ (this head's columns) = zᵀ · dk; v likewise.
    akParts.push(tf.matMul(zT, g.dk));
    avParts.push(tf.matMul(zT, g.dv));
    if (wantInput) {
      qTerms.push(tf.matMul(g.dq!, qp.heads[h].wq) as tf.Tensor2D);
      kvTerms.push(tf.matMul(g.dk, kv.heads[h].wk), tf.matMul(g.dv, kv.heads[h].wv));
    }
  }
  const cat = (parts: tf.Tensor2D[]) => (parts.length === 1 ? parts[0] : tf.concat(parts, 1));
  return {
    dAkT: cat(akParts),
    dAvT: cat(avParts),
    dxq: wantInput ? (tf.addN(qTerms) as tf.Tensor2D) : undefined,
    dxkv: wantInput ? (tf.addN(kvTerms) as tf.Tensor2D) : undefined,
  };
}
