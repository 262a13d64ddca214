/** Typed arrays ↔ inflora.v1.Tensor: round trips for every dtype, and refusals that name the field. */
import { describe, expect, it } from "vitest";
import {
  assertFinite,
  checkTensor,
  Dtype,
  decodeF32,
  decodeF32Into,
  decodeF64,
  decodeI32,
  decodeI64,
  decodeU8,
  encodeTensor,
  type Tensor,
  TensorCodecError,
} from "../../common/tensor_codec.js";
import { Tensor as TensorMessage } from "../../proto/gen/inflora/v1/tensor.js";

/** Through the real protobuf encoding, so byte offsets inside a frame are exercised too. */
function wire(t: Tensor): Tensor {
  const framed = new Uint8Array([7, 7, 7, ...TensorMessage.encode(t).finish()]);
  return TensorMessage.decode(framed.subarray(3));
}

function codecError(fn: () => unknown): TensorCodecError {
  try {
    fn();
  } catch (err) {
    if (err instanceof TensorCodecError) return err;
    throw err;
  }
  throw new Error("expected a TensorCodecError");
}

describe("tensor codec", () => {
  it("round-trips every dtype bit for bit, little-endian on the wire", () => {
    const f32 = Float32Array.from([1.5, -0, Number.MIN_VALUE, 3.4e38, -2.25, 1 / 3]);
    const t = wire(encodeTensor(f32, [2, 3]));
    expect(t.dtype).toBe(Dtype.DTYPE_F32);
    expect(t.shape).toEqual([2, 3]);
    expect(Array.from(t.data.subarray(0, 4))).toEqual([0, 0, 0xc0, 0x3f]); // 1.5f, little-endian
    const back = decodeF32(t, { field: "x", shape: [2, 3], finite: true });
    expect(Buffer.from(back.data.buffer).equals(Buffer.from(f32.buffer))).toBe(true);
    expect(back.shape).toEqual([2, 3]);

    const f64 = Float64Array.from([Math.PI, -1e300]);
    expect(decodeF64(wire(encodeTensor(f64, [2])), { field: "x" }).data).toEqual(f64);
    const i32 = Int32Array.from([-5, 0, 2 ** 31 - 1]);
    expect(decodeI32(wire(encodeTensor(i32, [3])), { field: "x" }).data).toEqual(i32);
    const i64 = BigInt64Array.from([-(2n ** 62n), 7n]);
    expect(decodeI64(wire(encodeTensor(i64, [1, 2])), { field: "x" }).data).toEqual(i64);
    const u8 = Uint8Array.from([0, 255, 9]);
    expect(decodeU8(wire(encodeTensor(u8, [3])), { field: "x" }).data).toEqual(u8);
  });

  it("encodes a subarray from its own offset, and a scalar with an empty shape", () => {
    const base = Int32Array.from([10, 11, 12, 13]);
    expect(decodeI32(wire(encodeTensor(base.subarray(1, 3), [2])), { field: "x" }).data).toEqual(
      Int32Array.from([11, 12]),
    );
    expect(decodeF32(wire(encodeTensor(Float32Array.of(4), [])), { field: "x", shape: [] }).data).toEqual(
      Float32Array.of(4),
    );
  });

  it("refuses a shape that does not hold the array", () => {
    expect(codecError(() => encodeTensor(new Float32Array(5), [2, 3], "params.Ak[0]")).message).toBe(
      "params.Ak[0]: shape [2, 3] holds 6 elements, the array 5",
    );
  });

  it("refuses missing tensors, unknown or unexpected dtypes, bad shapes and byte lengths, naming the field", () => {
    const good = encodeTensor(new Float32Array(6), [2, 3]);
    expect(codecError(() => checkTensor(undefined, Dtype.DTYPE_F32, { field: "rows" })).message).toBe(
      "rows: missing",
    );
    expect(
      codecError(() => checkTensor({ ...good, dtype: 42 as Dtype }, Dtype.DTYPE_F32, { field: "rows" }))
        .message,
    ).toBe("rows: unknown dtype 42");
    expect(codecError(() => decodeI32(good, { field: "samples" })).message).toBe(
      "samples: dtype float32, expected int32",
    );
    expect(codecError(() => decodeF32({ ...good, shape: [2, -3] }, { field: "w" })).message).toBe(
      "w: shape[1] is -3",
    );
    expect(
      codecError(() => decodeF32({ ...good, data: good.data.subarray(1) }, { field: "w" })).message,
    ).toBe("w: 23 bytes, but shape [2, 3] of float32 needs 24");
    expect(codecError(() => decodeF32(good, { field: "w", shape: [3, 2] })).message).toBe(
      "w: shape [2, 3], expected [3, 2]",
    );
    expect(codecError(() => decodeF32(good, { field: "w", shape: [2, 3, 1] })).message).toBe(
      "w: shape [2, 3], expected [2, 3, 1]",
    );
    // A free dimension accepts any size.
    expect(decodeF32(good, { field: "w", shape: [undefined, 3] }).shape).toEqual([2, 3]);
  });

  it("refuses NaN and ±Inf when asked, naming the first bad element", () => {
    const bad = Float32Array.from([1, 2, Number.NaN, Number.POSITIVE_INFINITY]);
    expect(codecError(() => decodeF32(encodeTensor(bad, [4]), { field: "grad", finite: true })).message).toBe(
      "grad: element 2 is NaN",
    );
    expect(decodeF32(encodeTensor(bad, [4]), { field: "grad" }).data[2]).toBeNaN();
    expect(
      codecError(() => assertFinite(Float64Array.from([0, Number.NEGATIVE_INFINITY]), "x")).message,
    ).toBe("x: element 1 is -Infinity");
    // Large but finite float64 values overflow a running sum; they are still accepted.
    expect(() => assertFinite(Float64Array.from([1.7e308, 1.7e308]), "x")).not.toThrow();
  });

  it("decodes into a destination at an offset, and refuses to overrun it", () => {
    const dest = new Float32Array(8);
    decodeF32Into(wire(encodeTensor(Float32Array.from([1, 2, 3]), [1, 3])), { field: "rows" }, dest, 4);
    expect(Array.from(dest)).toEqual([0, 0, 0, 0, 1, 2, 3, 0]);
    expect(
      codecError(() => decodeF32Into(encodeTensor(new Float32Array(3), [3]), { field: "rows" }, dest, 6))
        .message,
    ).toBe("rows: 3 elements at offset 6 overrun a destination of 8");
  });
});
