/**
 * The adapter under training folded into each head's k/v weights (W_k + A_k B, v likewise), so a pass runs
 * no adapter products of its own. The fold is not differentiated: the training pass computes A's
 * gradients itself from (x̂ Bᵀ).
 */
import * as tf from "@tensorflow/tfjs-core";
import type { KeyValueHead } from "./attention.js";
import { FUSED_KERNELS, hasFusedKernel, runFusedKernel } from "./fused_kernels.js";
import { tidyAll } from "./scope.js";

/** The adapter being trained: per block Bᵀ [D, r] (shared by k and v, frozen) and the trainable Aᵀ [r, D]. */
export interface LiveAdapter {
  readonly BT: readonly tf.Tensor2D[];
  readonly AkT: readonly tf.Tensor2D[];
  readonly AvT: readonly tf.Tensor2D[];
}

/** Per block: the adapter's B [r, D] and the folded k/v weights of every head. */
export interface LiveFold {
  readonly B: readonly tf.Tensor2D[];
  readonly kv: readonly (readonly KeyValueHead[])[];
}

/** Identifies an adapter by its tensors' data (a tf.Variable's changes when it is assigned). */
export function adapterKey(adapter: LiveAdapter): tf.DataId[] {
  return [...adapter.BT, ...adapter.AkT, ...adapter.AvT].map((t) => t.dataId);
}

export function sameKey(a: readonly tf.DataId[], b: readonly tf.DataId[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * Folds `adapter` into the per-head weights `base` (one list per block). Returns the fold and the tensors
 * it made — kept (tf.keep), so they outlive the caller's tidy until the caller disposes them; the value
 * biases are shared with `base`.
 */
export function foldLiveAdapter(
  base: readonly (readonly KeyValueHead[])[],
  adapter: LiveAdapter,
): { fold: LiveFold; owned: tf.Tensor[] } {
  const fused = hasFusedKernel(FUSED_KERNELS.foldAdd);
  const fold = tidyAll((): LiveFold => {
    const B: tf.Tensor2D[] = [];
    const kv: KeyValueHead[][] = [];
    for (let i = 0; i < base.length; i++) {
      B.push(tf.transpose(adapter.BT[i]) as tf.Tensor2D);
      kv.push(fused ? foldBlockFused(base[i], adapter, i) : foldBlockChain(base[i], adapter, i, B[i]));
    }
    return { B, kv };
  });
  const owned = [...fold.B, ...fold.kv.flat().flatMap((h) => [h.wk, h.wvT, h.wv])];
  for (const t of owned) tf.keep(t);
  return { fold, owned };
}

function foldBlockChain(
  heads: readonly KeyValueHead[],
  adapter: LiveAdapter,
  block: number,
  b: tf.Tensor2D,
): KeyValueHead[] {
  const BT = adapter.BT[block];
  const ak = tf.transpose(adapter.AkT[block]) as tf.Tensor2D;
  const av = tf.transpose(adapter.AvT[block]) as tf.Tensor2D;
  const r = b.shape[0];
  return heads.map((w, h) => {
    const dh = w.wk.shape[0];
    const row = h * dh;
    // This head's rows of A [D, r]: a slice of a small trainable, not of an activation.
    const akH = tf.slice(ak, [row, 0], [dh, r]);
    const avH = tf.slice(av, [row, 0], [dh, r]);
    return {
      wk: tf.add(w.wk, tf.matMul(akH, b)) as tf.Tensor2D,
      wvT: tf.add(w.wvT, tf.matMul(BT, tf.transpose(avH))) as tf.Tensor2D,
      bv: w.bv,
      wv: tf.add(w.wv, tf.matMul(avH, b)) as tf.Tensor2D,
    };
  });
}

/** The same fold as foldBlockChain, one fused kernel per folded weight (fused_kernels.ts's foldAdd). */
function foldBlockFused(heads: readonly KeyValueHead[], adapter: LiveAdapter, block: number): KeyValueHead[] {
  const bT = adapter.BT[block];
  const fold = (w: tf.Tensor2D, aT: tf.Tensor2D, rowOffset: number, transposed: boolean) =>
    runFusedKernel<tf.Tensor2D>(FUSED_KERNELS.foldAdd, { w, aT, bT }, { rowOffset, transposed });
  return heads.map((w, h) => {
    const row = h * w.wk.shape[0];
    return {
      wk: fold(w.wk, adapter.AkT[block], row, false),
      wvT: fold(w.wvT, adapter.AvT[block], row, true),
      bv: w.bv,
      wv: fold(w.wv, adapter.AvT[block], row, false),
    };
  });
}
