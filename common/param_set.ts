/**
 * A step's trainable parameters as the coordinator publishes them on NATS (`inflora.v1.ParamSet`): one
 * flat float32 vector — A_k of every block, A_v of every block, the head's weight and bias — so that one
 * publish replaces sending A_t to every worker over gRPC. The TrainStep that follows names the SHA-256
 * of these bytes over the authenticated gRPC channel; a worker uses a ParamSet only when it matches.
 */
import { createHash } from "node:crypto";
import { ParamSet } from "../proto/gen/inflora/v1/compute.js";
import type { TrainParams } from "./protocol.js";
import { checkTensor, Dtype, decodeF32, encodeTensor, TensorCodecError } from "./tensor_codec.js";

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

export function encodeParamSet(p: TrainParams, D: number): Uint8Array {
  const parts = [...p.Ak, ...p.Av, p.head.weight, p.head.bias];
  const flat = new Float32Array(parts.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of parts) {
    flat.set(a, at);
    at += a.length;
  }
  return ParamSet.encode({
    version: p.version,
    rank: p.Ak.length > 0 ? p.Ak[0].length / D : 0,
    classes: p.head.classes,
    values: encodeTensor(flat, [flat.length], "values"),
  }).finish();
}

/** The parameters in a ParamSet for a model of `depth` blocks of width D; TensorCodecError when malformed. */
export function decodeParamSet(bytes: Uint8Array, D: number, depth: number): TrainParams {
  const m = ParamSet.decode(bytes);
  const { rank, classes } = m;
  if (rank < 1 || classes < 1) throw new TensorCodecError("param_set", `rank ${rank}, classes ${classes}`);
  const total = 2 * depth * D * rank + classes * (D + 1);
  checkTensor(m.values, Dtype.DTYPE_F32, { field: "param_set.values", shape: [total] });
  const flat = decodeF32(m.values, { field: "param_set.values", finite: true }).data;
  const per = D * rank;
  const block = (k: number) => flat.slice(k * per, (k + 1) * per);
  const head = 2 * depth * per;
  return {
    version: m.version,
    Ak: Array.from({ length: depth }, (_, b) => block(b)),
    Av: Array.from({ length: depth }, (_, b) => block(depth + b)),
    head: {
      classes,
      weight: flat.slice(head, head + classes * D),
      bias: flat.slice(head + classes * D, head + classes * (D + 1)),
    },
  };
}
