/**
 * Typed arrays ↔ the wire's `inflora.v1.Tensor` (dtype, shape, little-endian bytes), with the checks both
 * ends of the gRPC transport rely on: a known dtype, a well-formed shape, a byte length that matches it,
 * the dtype and shape the receiver expects, and (for floats, on request) finite values. Every error names
 * the message field at fault, so a refusal or a quarantine says what was wrong.
 */
import { Dtype, type Tensor } from "../proto/gen/inflora/v1/tensor.js";

export { Dtype, type Tensor };

export type TensorArray = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array;

export class TensorCodecError extends Error {
  override readonly name = "TensorCodecError";
  constructor(
    /** The field at fault, as a path into the message (`shards[2].samples`). */
    readonly field: string,
    readonly detail: string,
  ) {
    super(`${field}: ${detail}`);
  }
}

interface DtypeInfo {
  readonly name: string;
  readonly bytes: number;
  readonly float: boolean;
}

const DTYPES: ReadonlyMap<Dtype, DtypeInfo> = new Map([
  [Dtype.DTYPE_F32, { name: "float32", bytes: 4, float: true }],
  [Dtype.DTYPE_F64, { name: "float64", bytes: 8, float: true }],
  [Dtype.DTYPE_I32, { name: "int32", bytes: 4, float: false }],
  [Dtype.DTYPE_I64, { name: "int64", bytes: 8, float: false }],
  [Dtype.DTYPE_U8, { name: "uint8", bytes: 1, float: false }],
]);

export function dtypeName(dtype: Dtype): string {
  return DTYPES.get(dtype)?.name ?? `unknown dtype ${dtype}`;
}

function dtypeOf(data: TensorArray): Dtype {
  if (data instanceof Float32Array) return Dtype.DTYPE_F32;
  if (data instanceof Float64Array) return Dtype.DTYPE_F64;
  if (data instanceof Int32Array) return Dtype.DTYPE_I32;
  if (data instanceof BigInt64Array) return Dtype.DTYPE_I64;
  return Dtype.DTYPE_U8;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * A Tensor holding `data` with `shape` (row-major). On little-endian hosts the bytes are a view of `data`,
 * not a copy: the protobuf encoder copies them into the message anyway.
 */
export function encodeTensor(data: TensorArray, shape: readonly number[], field = "tensor"): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  if (n !== data.length) {
    throw new TensorCodecError(
      field,
      `shape ${formatShape(shape)} holds ${n} elements, the array ${data.length}`,
    );
  }
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return {
    dtype: dtypeOf(data),
    shape: [...shape],
    data: LITTLE_ENDIAN ? bytes : swapBytes(bytes, data.BYTES_PER_ELEMENT),
  };
}

/**
 * A shape for an error message: a hostile sender's shape may have millions of dimensions, and the message
 * travels back in a gRPC trailer.
 */
export function formatShape(shape: readonly (number | string)[]): string {
  const MAX_DIMS = 8;
  if (shape.length <= MAX_DIMS) return `[${shape.join(", ")}]`;
  return `[${shape.slice(0, MAX_DIMS).join(", ")}, … ${shape.length} dimensions]`;
}

/** Expected dimensions: a number must match, `undefined` accepts any size (a free dimension). */
export type ShapeSpec = readonly (number | undefined)[];

export interface DecodeSpec {
  /** Field name for error messages. */
  readonly field: string;
  readonly shape?: ShapeSpec;
  /** Refuse NaN and ±Inf (float dtypes only). */
  readonly finite?: boolean;
}

export interface Decoded<T> {
  readonly data: T;
  readonly shape: number[];
}

/** Checks a Tensor's dtype, shape and byte length; returns its shape. Does not look at the values. */
export function checkTensor(t: Tensor | undefined, dtype: Dtype, spec: DecodeSpec): number[] {
  const { field } = spec;
  if (t === undefined) throw new TensorCodecError(field, "missing");
  const info = DTYPES.get(t.dtype);
  if (!info) throw new TensorCodecError(field, `unknown dtype ${t.dtype}`);
  if (t.dtype !== dtype)
    throw new TensorCodecError(field, `dtype ${info.name}, expected ${dtypeName(dtype)}`);
  let n = 1;
  for (const [i, d] of t.shape.entries()) {
    if (!Number.isSafeInteger(d) || d < 0) throw new TensorCodecError(field, `shape[${i}] is ${d}`);
    n *= d;
  }
  if (!Number.isSafeInteger(n * info.bytes))
    throw new TensorCodecError(field, `shape ${formatShape(t.shape)} is too large`);
  if (t.data.length !== n * info.bytes) {
    throw new TensorCodecError(
      field,
      `${t.data.length} bytes, but shape ${formatShape(t.shape)} of ${info.name} needs ${n * info.bytes}`,
    );
  }
  const want = spec.shape;
  if (want) {
    const ok = want.length === t.shape.length && want.every((d, i) => d === undefined || d === t.shape[i]);
    if (!ok) {
      const wanted = formatShape(want.map((d) => (d === undefined ? "*" : d)));
      throw new TensorCodecError(field, `shape ${formatShape(t.shape)}, expected ${wanted}`);
    }
  }
  return t.shape;
}

function copyBytes(t: Tensor, elementBytes: number): ArrayBuffer {
  // A fresh, aligned buffer: the message's bytes sit at an arbitrary offset in the received frame.
  const own = new Uint8Array(t.data);
  return LITTLE_ENDIAN ? own.buffer : swapBytes(own, elementBytes).buffer;
}

export function decodeF32(t: Tensor | undefined, spec: DecodeSpec): Decoded<Float32Array> {
  const shape = checkTensor(t, Dtype.DTYPE_F32, spec);
  const data = new Float32Array(copyBytes(t!, 4));
  if (spec.finite) assertFinite(data, spec.field);
  return { data, shape };
}

export function decodeF64(t: Tensor | undefined, spec: DecodeSpec): Decoded<Float64Array> {
  const shape = checkTensor(t, Dtype.DTYPE_F64, spec);
  const data = new Float64Array(copyBytes(t!, 8));
  if (spec.finite) assertFinite(data, spec.field);
  return { data, shape };
}

export function decodeI32(t: Tensor | undefined, spec: DecodeSpec): Decoded<Int32Array> {
  const shape = checkTensor(t, Dtype.DTYPE_I32, spec);
  return { data: new Int32Array(copyBytes(t!, 4)), shape };
}

export function decodeI64(t: Tensor | undefined, spec: DecodeSpec): Decoded<BigInt64Array> {
  const shape = checkTensor(t, Dtype.DTYPE_I64, spec);
  return { data: new BigInt64Array(copyBytes(t!, 8)), shape };
}

export function decodeU8(t: Tensor | undefined, spec: DecodeSpec): Decoded<Uint8Array> {
  const shape = checkTensor(t, Dtype.DTYPE_U8, spec);
  return { data: t!.data.slice(), shape };
}

/**
 * A float32 Tensor's values without copying them when its bytes sit 4-byte aligned in the received
 * message (the sender can arrange it; see TrainStepResponse.align), else as a copy. The view shares the
 * message's buffer, which the transport never reuses. Checks dtype and shape, not the values.
 */
export function viewF32(t: Tensor | undefined, spec: DecodeSpec): Decoded<Float32Array> {
  const shape = checkTensor(t, Dtype.DTYPE_F32, spec);
  const bytes = t!.data;
  const data =
    LITTLE_ENDIAN && bytes.byteOffset % 4 === 0
      ? new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4)
      : new Float32Array(copyBytes(t!, 4));
  return { data, shape };
}

/**
 * Decodes a float32 Tensor straight into `dest` at element `offset` (one copy instead of two: this is the
 * path of the 28 MB covariance replies). Returns the tensor's shape.
 */
export function decodeF32Into(
  t: Tensor | undefined,
  spec: DecodeSpec,
  dest: Float32Array,
  offset: number,
): number[] {
  const shape = checkTensor(t, Dtype.DTYPE_F32, spec);
  const n = t!.data.length / 4;
  if (offset < 0 || offset + n > dest.length) {
    throw new TensorCodecError(
      spec.field,
      `${n} elements at offset ${offset} overrun a destination of ${dest.length}`,
    );
  }
  const target = dest.subarray(offset, offset + n);
  if (LITTLE_ENDIAN) new Uint8Array(target.buffer, target.byteOffset, target.byteLength).set(t!.data);
  else target.set(new Float32Array(swapBytes(t!.data, 4).buffer));
  if (spec.finite) assertFinite(target, spec.field);
  return shape;
}

/** Throws naming the first non-finite element. */
export function assertFinite(data: Float32Array | Float64Array, field: string): void {
  // A float64 sum of finite float32/float64 values stays finite for any array that fits in memory, and
  // NaN or ±Inf anywhere poisons it: one branch-free pass for the common, clean case.
  let sum = 0;
  for (let i = 0; i < data.length; i++) sum += data[i];
  if (Number.isFinite(sum)) return;
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) throw new TensorCodecError(field, `element ${i} is ${data[i]}`);
  }
  // Only float64 inputs near the top of the range can overflow the sum; they are finite, so accept them.
}

function swapBytes(bytes: Uint8Array, size: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i += size) {
    for (let k = 0; k < size; k++) out[i + k] = bytes[i + size - 1 - k];
  }
  return out;
}
