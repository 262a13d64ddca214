/**
 * The adapter under training folded into the k/v weights (W_k + A_k B, v likewise), in either attention
 * layout, so a pass runs no adapter products of its own. The fold is not differentiated: the training pass
 * computes A's gradients itself from (x̂ Bᵀ).
 */
import * as tf from "@tensorflow/tfjs-core";
import type { KeyValue } from "./attention.js";
import type { JointKeyValue } from "./attention_joint.js";
import type { KeyValueHead } from "./attention_per_head.js";
import { FUSED_KERNELS, hasFusedKernel, runFusedKernel } from "./fused_kernels.js";
import { tidyAll } from "./scope.js";

/** The adapter being trained: per block Bᵀ [D, r] (shared by k and v, frozen) and the trainable Aᵀ [r, D]. */
export interface LiveAdapter {
  readonly BT: readonly tf.Tensor2D[];
  readonly AkT: readonly tf.Tensor2D[];
  readonly AvT: readonly tf.Tensor2D[];
}

/** Per block: the adapter's B [r, D] and the folded k/v weights. */
export interface LiveFold {
  readonly B: readonly tf.Tensor2D[];
  readonly kv: readonly KeyValue[];
}

/** Identifies an adapter by its tensors' data (a tf.Variable's changes when it is assigned). */
export function adapterKey(adapter: LiveAdapter): tf.DataId[] {
  return [...adapter.BT, ...adapter.AkT, ...adapter.AvT].map((t) => t.dataId);
}

export function sameKey(a: readonly tf.DataId[], b: readonly tf.DataId[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * Folds `adapter` into the k/v weights `base` (one per block). Returns the fold and the tensors it made —
 * kept (tf.keep), so they outlive the caller's tidy until the caller disposes them; the value biases are
 * shared with `base`.
 */
export function foldLiveAdapter(
  base: readonly KeyValue[],
  adapter: LiveAdapter,
): { fold: LiveFold; owned: tf.Tensor[] } {
  const fused = hasFusedKernel(FUSED_KERNELS.foldAdd);
  const fold = tidyAll((): LiveFold => {
    const B: tf.Tensor2D[] = [];
    const kv: KeyValue[] = [];
    for (let i = 0; i < base.length; i++) {
      B.push(tf.transpose(adapter.BT[i]) as tf.Tensor2D);
      const w = base[i];
      if (w.layout === "joint") kv.push(foldJoint(w, adapter, i));
      else {
        const heads = fused ? foldBlockFused(w.heads, adapter, i) : foldBlockChain(w.heads, adapter, i, B[i]);
        kv.push({ layout: "perHead", heads });
      }
    }
    return { B, kv };
  });
  const owned = [...fold.B, ...fold.kv.flatMap(ownedBy)];
  for (const t of owned) tf.keep(t);
  return { fold, owned };
}

/** The tensors a fold made for one block (not the shared value biases). */
function ownedBy(kv: KeyValue): tf.Tensor[] {
  return kv.layout === "joint" ? [kv.wk, kv.wv] : kv.heads.flatMap((h) => [h.wk, h.wvT, h.wv]);
}

/** W_k + A_k B with A_k B = (Aᵀ)ᵀ (Bᵀ)ᵀ, [D, D]; v likewise. */
function foldJoint(w: JointKeyValue, adapter: LiveAdapter, block: number): JointKeyValue {
  const BT = adapter.BT[block];
  return {
    layout: "joint",
    wk: tf.add(w.wk, tf.matMul(adapter.AkT[block], BT, true, true)) as tf.Tensor2D,
    wv: tf.add(w.wv, tf.matMul(adapter.AvT[block], BT, true, true)) as tf.Tensor2D,
    bv: w.bv,
  };
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
