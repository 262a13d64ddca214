/**
 * Per-head attention weights built from timm's host arrays (qkv.weight [3D, D], proj.weight [D, D]), in
 * the layouts attention.ts multiplies with: every product a plain 2-D matmul, no activation sliced. The
 * cutting and transposing happen on the host: setup then allocates no temporary tensors (on wasm, they
 * would grow the heap), and the base k/v weights stay host arrays to fold adapters into.
 */
import * as tf from "@tensorflow/tfjs-core";
import { transpose2d } from "../../common/permute.js";
import type { KeyValueHead, QueryProjHead } from "./attention.js";

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

export function disposeQueryProj(heads: readonly QueryProjHead[]): void {
  for (const h of heads) tf.dispose([h.wqT, h.bq, h.wq, h.wpT, h.wp]);
}

export function disposeKeyValues(heads: readonly KeyValueHead[]): void {
  for (const h of heads) tf.dispose([h.wk, h.wvT, h.bv, h.wv]);
}
