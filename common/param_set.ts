/**
 * A step's trainable parameters as the coordinator publishes them on NATS (`inflora.v1.ParamSet`): one
 * flat float32 vector — A_k of every block, A_v of every block, the head's weight and bias — so that one
 * publish replaces sending A_t to every worker over gRPC. The TrainStep that follows names the SHA-256
 * of these bytes over the authenticated gRPC channel; a worker uses a ParamSet only when it matches.
 */
import { createHash } from "node:crypto";
import { ParamSet } from "../proto/gen/inflora/v1/compute.js";
import { flatLength, flatten, unflatten } from "./flat_params.js";
import type { TrainParams } from "./protocol.js";
import { checkTensor, Dtype, decodeF32, encodeTensor, TensorCodecError } from "./tensor_codec.js";

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

export function encodeParamSet(p: TrainParams, D: number): Uint8Array {
  const flat = flatten({ Ak: p.Ak, Av: p.Av, weight: p.head.weight, bias: p.head.bias });
  return ParamSet.encode({
    version: p.version,
    rank: p.Ak.length > 0 ? p.Ak[0].length / D : 0,
    classes: p.head.classes,
    values: encodeTensor(flat, [flat.length], "values"),
  }).finish();
}

/** The version a ParamSet carries, without decoding its values; TensorCodecError when it is no ParamSet. */
export function paramSetVersion(bytes: Uint8Array): number {
  try {
    return ParamSet.decode(bytes).version;
  } catch (err) {
    throw new TensorCodecError("param_set", (err as Error).message);
  }
}

/** The parameters in a ParamSet for a model of `depth` blocks of width D; TensorCodecError when malformed. */
export function decodeParamSet(bytes: Uint8Array, D: number, depth: number): TrainParams {
  const m = ParamSet.decode(bytes);
  const { rank, classes } = m;
  if (rank < 1 || classes < 1) throw new TensorCodecError("param_set", `rank ${rank}, classes ${classes}`);
  const shape = { D, depth, rank, classes };
  checkTensor(m.values, Dtype.DTYPE_F32, { field: "param_set.values", shape: [flatLength(shape)] });
  // One copy out of the message; the tensors are views of it.
  const t = unflatten(decodeF32(m.values, { field: "param_set.values", finite: true }).data, shape);
  return { version: m.version, Ak: t.Ak, Av: t.Av, head: { classes, weight: t.weight, bias: t.bias } };
}
