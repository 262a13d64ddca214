/**
 * A block's attention in either weight layout (policy.ts's jointHeads): all heads per matmul
 * (attention_joint.ts) or head by head (attention_per_head.ts). The layout is chosen when the weights are
 * built (head_weights.ts) and travels with them; these two functions only pass each layout to its own code.
 */
import type * as tf from "@tensorflow/tfjs-core";
import {
  type JointKeyValue,
  type JointQueryProj,
  type JointSaved,
  jointBackward,
  jointForward,
} from "./attention_joint.js";
import {
  type PerHeadKeyValue,
  type PerHeadQueryProj,
  type PerHeadSaved,
  perHeadBackward,
  perHeadForward,
} from "./attention_per_head.js";
import type { AttentionForwardResult, AttentionGrads, AttentionShape } from "./attention_types.js";
import type { ComputePolicy } from "./policy.js";

export type { AttentionShape } from "./attention_types.js";

/** A block's frozen query and projection weights. */
export type QueryProj = PerHeadQueryProj | JointQueryProj;
/** A block's key and value weights, adapters folded in. */
export type KeyValue = PerHeadKeyValue | JointKeyValue;
/** What the backward pass reads. */
export type AttentionSaved = PerHeadSaved | JointSaved;

function mismatch(what: string, a: string, b: string): Error {
  return new Error(`attention: ${what} in the ${a} layout, key/value weights in the ${b} layout`);
}

export function attentionForward(
  xq: tf.Tensor2D,
  xh: tf.Tensor2D,
  qp: QueryProj,
  kv: KeyValue,
  s: AttentionShape,
  liveB?: tf.Tensor2D,
): AttentionForwardResult<AttentionSaved> {
  if (qp.layout === "joint" && kv.layout === "joint") return jointForward(xq, xh, qp, kv, s, liveB);
  if (qp.layout === "perHead" && kv.layout === "perHead") return perHeadForward(xq, xh, qp, kv, s, liveB);
  throw mismatch("query weights", qp.layout, kv.layout);
}

export function attentionBackward(
  dy: tf.Tensor2D,
  qp: QueryProj,
  kv: KeyValue,
  saved: AttentionSaved,
  zT: tf.Tensor2D,
  s: AttentionShape,
  policy: ComputePolicy,
  wantInput: boolean,
): AttentionGrads {
  if (qp.layout === "joint" && kv.layout === "joint" && saved.layout === "joint") {
    return jointBackward(dy, qp, kv, saved, zT, s, wantInput);
  }
  if (qp.layout === "perHead" && kv.layout === "perHead" && saved.layout === "perHead") {
    return perHeadBackward(dy, qp, kv, saved, zT, s, policy, wantInput);
  }
  throw mismatch("query weights and saved state", `${qp.layout}/${saved.layout}`, kv.layout);
}
