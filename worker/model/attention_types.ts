/** What both attention layouts (attention_per_head.ts, attention_joint.ts) take and return. */
import type * as tf from "@tensorflow/tfjs-core";

/** Rows of a pass: `batch` images of `tokens` tokens, of which `queries` per image (all, or the class token). */
export interface AttentionShape {
  readonly batch: number;
  readonly tokens: number;
  readonly queries: number;
}

export interface AttentionForwardResult<Saved> {
  /** Attention output, projection included, residual not: [B·Nq, D]. */
  readonly y: tf.Tensor2D;
  readonly saved: Saved;
  /** (x̂ Bᵀ)ᵀ of the live adapter, [r, B·N], when a training pass asked for it. */
  readonly zT?: tf.Tensor2D;
}

export interface AttentionGrads {
  /** The live adapter's gradients, Aᵀ layout [r, D]. */
  readonly dAkT: tf.Tensor2D;
  readonly dAvT: tf.Tensor2D;
  /** dL/dx̂ through the queries ([B·Nq, D]) and through the keys and values ([B·N, D]). */
  readonly dxq?: tf.Tensor2D;
  readonly dxkv?: tf.Tensor2D;
}
