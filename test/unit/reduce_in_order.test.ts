/**
 * The coordinator's reduction: per element, the float32 parts widened and added in float64 in part
 * (micro-shard) order. The native path must give the very bits of that definition — written out here
 * as a plain left fold — on values where order and rounding matter (cancellation, magnitudes 2^-140 to
 * 2^120, signed zeros, subnormals), and reduceStep must average what the shards summed.
 */
import { describe, expect, it } from "vitest";
import type { TrainStepResult } from "../../common/protocol.js";
import { reduceStep, sumInOrder } from "../../coordinator/reduce.js";
import { requireNative } from "../../native/index.js";
import { mulberry32 } from "../helpers/tiny_vit.js";

function adversarial(n: number, seed: number): Float32Array {
  const rnd = mulberry32(seed);
  return Float32Array.from({ length: n }, (_, i) => {
    if (i % 97 === 0) return -0;
    if (i % 89 === 0) return 1e-45 * (rnd() < 0.5 ? -1 : 1);
    return (rnd() - 0.5) * 2 ** Math.floor(rnd() * 260 - 140);
  });
}

/** The definition: ((0 + p0[i]) + p1[i]) + … in float64. */
function leftFold(parts: Float32Array[]): Float64Array {
  const out = new Float64Array(parts[0].length);
  for (let i = 0; i < out.length; i++) {
    let acc = 0;
    for (const p of parts) acc += p[i];
    out[i] = acc;
  }
  return out;
}

const bits = (a: Float64Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe("in-order float64 reduction", () => {
  it("the native sum has the bits of the left fold, for lengths around its block size", () => {
    const native = requireNative();
    for (const [n, count] of [
      [1, 1],
      [7, 3],
      [2047, 16],
      [2048, 5],
      [2049, 16],
      [7680, 16],
      [100_003, 2],
    ]) {
      const parts = Array.from({ length: count }, (_, s) => adversarial(n, 1000 * n + s));
      const out = new Float64Array(n).fill(Number.NaN);
      native.sumF64(parts, out);
      expect(bits(out).equals(bits(leftFold(parts))), `n ${n}, ${count} parts`).toBe(true);
    }
    // Order matters on these values: the reverse order gives other bits somewhere.
    const parts = Array.from({ length: 16 }, (_, s) => adversarial(7680, s));
    expect(bits(leftFold(parts)).equals(bits(leftFold([...parts].reverse())))).toBe(false);
    expect(() => native.sumF64([new Float32Array(3), new Float32Array(4)], new Float64Array(3))).toThrow(
      /sumF64: an element has 4 elements, expected 3/,
    );
  });

  it("sumInOrder and reduceStep: shard-ordered sums, divided by the sample count", () => {
    const shard = (index: number, count: number, seed: number): TrainStepResult => ({
      index,
      count,
      lossSum: 0.5 * count,
      correct: index,
      gradAk: [adversarial(6, seed)],
      gradAv: [adversarial(6, seed + 1)],
      gradHeadW: adversarial(4, seed + 2),
      gradHeadB: adversarial(2, seed + 3),
    });
    const results = [shard(0, 3, 10), shard(1, 2, 20), shard(2, 4, 30)];
    const parts = results.map((r) => [...r.gradAk, ...r.gradAv, r.gradHeadW, r.gradHeadB]);
    for (let j = 0; j < 4; j++) {
      expect(bits(sumInOrder(parts, j)).equals(bits(leftFold(parts.map((p) => p[j]))))).toBe(true);
    }
    const step = reduceStep(results);
    expect(step).toMatchObject({ count: 9, lossSum: 4.5, correct: 3 });
    const want = leftFold(results.map((r) => r.gradHeadB)).map((v) => v / 9);
    expect(bits(step.grads[3]).equals(bits(want))).toBe(true);
  });
});
