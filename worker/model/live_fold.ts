/**
 * The adapter under training folded into each head's k/v weights (W_k + A_k B, v likewise), so a pass runs
 * no adapter products of its own. The fold is not differentiated: the training pass computes A's
 * gradients itself from (x̂ Bᵀ).
 */
import * as tf from "@tensorflow/tfjs-core";
import type { KeyValueHead } from "./attention.js";
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
  const fold = tidyAll((): LiveFold => {
    const B: tf.Tensor2D[] = [];
    const kv: KeyValueHead[][] = [];
    for (let i = 0; i < base.length; i++) {
      const BT = adapter.BT[i];
      const b = tf.transpose(BT) as tf.Tensor2D;
      const ak = tf.transpose(adapter.AkT[i]) as tf.Tensor2D;
      const av = tf.transpose(adapter.AvT[i]) as tf.Tensor2D;
      const r = b.shape[0];
      B.push(b);
      kv.push(
        base[i].map((w, h) => {
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
        }),
      );
    }
    return { B, kv };
  });
  const owned = [...fold.B, ...fold.kv.flat().flatMap((h) => [h.wk, h.wvT, h.wv])];
  for (const t of owned) tf.keep(t);
  return { fold, owned };
}
