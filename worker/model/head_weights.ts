/**
 * Attention weights built from timm's host arrays (qkv.weight [3D, D], proj.weight [D, D]) in the layout
 * the model runs (policy.ts's jointHeads): timm's matrices as they are (attention_joint.ts), or cut per head
 * so that every product is a plain 2-D matmul and no activation is sliced (attention_per_head.ts). The
 * cutting and transposing happen on the host: setup then allocates no temporary tensors (on wasm, they
 * would grow the heap), and the base k/v weights stay host arrays to fold adapters into.
 */
import * as tf from "@tensorflow/tfjs-core";
import { transpose2d } from "../../common/permute.js";
import type { KeyValue, QueryProj } from "./attention.js";
import type { KeyValueHead, QueryProjHead } from "./attention_per_head.js";

/** Columns [c0, c0 + n) of a row-major [rows, cols] matrix, as a new [rows, n] matrix. */
export function columnBlock(
  a: Float32Array,
  rows: number,
  cols: number,
  c0: number,
  n: number,
): Float32Array {
  const out = new Float32Array(rows * n);
  for (let i = 0; i < rows; i++) out.set(a.subarray(i * cols + c0, i * cols + c0 + n), i * n);
  return out;
}

/** Query and projection weights of each head; the score scale 1/√Dh goes into the query. */
export function queryProjHeads(
  qkvW: Float32Array,
  qkvB: Float32Array,
  projW: Float32Array,
  D: number,
  heads: number,
): QueryProjHead[] {
  const dh = D / heads;
  const scale = dh ** -0.5;
  return Array.from({ length: heads }, (_, h) => {
    const wq = qkvW.slice(h * dh * D, (h + 1) * dh * D).map((v) => v * scale);
    const wp = columnBlock(projW, D, D, h * dh, dh);
    return {
      wqT: tf.tensor2d(transpose2d(wq, dh, D), [D, dh]),
      bq: tf.tensor1d(qkvB.slice(h * dh, (h + 1) * dh).map((v) => v * scale)),
      wq: tf.tensor2d(wq, [dh, D]),
      wpT: tf.tensor2d(transpose2d(wp, D, dh), [dh, D]),
      wp: tf.tensor2d(wp, [D, dh]),
    };
  });
}

/** Key and value weights of each head from (adapter-folded) [D, D] matrices and the value bias. */
export function keyValueHeads(
  wk: Float32Array,
  wv: Float32Array,
  bv: Float32Array,
  D: number,
  heads: number,
): KeyValueHead[] {
  const dh = D / heads;
  return Array.from({ length: heads }, (_, h) => {
    const rows = (w: Float32Array) => w.subarray(h * dh * D, (h + 1) * dh * D);
    return {
      wk: tf.tensor2d(rows(wk), [dh, D]),
      wvT: tf.tensor2d(transpose2d(rows(wv), dh, D), [D, dh]),
      bv: tf.tensor1d(bv.subarray(h * dh, (h + 1) * dh)),
      wv: tf.tensor2d(rows(wv), [dh, D]),
    };
  });
}

/** A block's query and projection weights, with the score scale 1/√Dh folded into the query's. */
export function queryProj(
  qkvW: Float32Array,
  qkvB: Float32Array,
  projW: Float32Array,
  projB: Float32Array,
  D: number,
  heads: number,
  joint: boolean,
): QueryProj {
  const projBias = tf.tensor1d(projB);
  if (!joint) return { layout: "perHead", heads: queryProjHeads(qkvW, qkvB, projW, D, heads), projBias };
  const scale = (D / heads) ** -0.5;
  return {
    layout: "joint",
    heads,
    wq: tf.tensor2d(
      qkvW.slice(0, D * D).map((v) => v * scale),
      [D, D],
    ),
    bq: tf.tensor1d(qkvB.slice(0, D).map((v) => v * scale)),
    wp: tf.tensor2d(projW, [D, D]),
    projBias,
  };
}

/** A block's key and value weights from (adapter-folded) [D, D] matrices and the value bias. */
export function keyValue(
  wk: Float32Array,
  wv: Float32Array,
  bv: Float32Array,
  D: number,
  heads: number,
  joint: boolean,
): KeyValue {
  if (!joint) return { layout: "perHead", heads: keyValueHeads(wk, wv, bv, D, heads) };
  return { layout: "joint", wk: tf.tensor2d(wk, [D, D]), wv: tf.tensor2d(wv, [D, D]), bv: tf.tensor1d(bv) };
}

export function disposeQueryProj(qp: QueryProj): void {
  if (qp.layout === "joint") tf.dispose([qp.wq, qp.bq, qp.wp, qp.projBias]);
  else {
    for (const h of qp.heads) tf.dispose([h.wqT, h.bq, h.wq, h.wpT, h.wp]);
    qp.projBias.dispose();
  }
}

export function disposeKeyValue(kv: KeyValue): void {
  if (kv.layout === "joint") tf.dispose([kv.wk, kv.wv, kv.bv]);
  else for (const h of kv.heads) tf.dispose([h.wk, h.wvT, h.bv, h.wv]);
}
