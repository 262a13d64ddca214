/**
 * The native addon's GEMM (OpenBLAS) against a naive JS matmul: every transpose combination, batches with
 * the cpu backend's `i % batch` broadcasting, degenerate sizes, and bad input refused with a JS error.
 * Needs `npm run build:native`; without the addon these tests fail and say how to build it.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { type NativeAddon, requireNative } from "../../native/index.js";
import { mulberry32 } from "../helpers/tiny_vit.js";

let addon: NativeAddon;

// Per test, so that without the addon every test fails with the build instructions (none is skipped).
beforeEach(() => {
  addon = requireNative();
});

function random(n: number, seed: number): Float32Array {
  const rnd = mulberry32(seed);
  return Float32Array.from({ length: n }, () => rnd() * 2 - 1);
}

/** c[i] = op(a[i % batchA]) op(b[i % batchB]) in float64, row-major. */
function naive(
  a: Float32Array,
  b: Float32Array,
  batchA: number,
  batchB: number,
  m: number,
  n: number,
  k: number,
  ta: boolean,
  tb: boolean,
): Float64Array {
  const batch = Math.max(batchA, batchB);
  const c = new Float64Array(batch * m * n);
  for (let t = 0; t < batch; t++) {
    const ao = (t % batchA) * m * k;
    const bo = (t % batchB) * k * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) {
          const av = ta ? a[ao + p * m + i] : a[ao + i * k + p];
          const bv = tb ? b[bo + j * k + p] : b[bo + p * n + j];
          s += av * bv;
        }
        c[t * m * n + i * n + j] = s;
      }
    }
  }
  return c;
}

function maxRelError(got: Float32Array, want: Float64Array, scale: number): number {
  let e = 0;
  for (let i = 0; i < want.length; i++) e = Math.max(e, Math.abs(got[i] - want[i]) / scale);
  return e;
}

describe("native sgemm", () => {
  const shapes: [number, number, number][] = [
    [1, 1, 1],
    [3, 5, 7],
    [17, 33, 9],
    [64, 48, 130],
  ];
  for (const ta of [false, true]) {
    for (const tb of [false, true]) {
      for (const [batchA, batchB] of [
        [1, 1],
        [4, 4],
        [4, 1],
        [1, 3],
      ]) {
        it(`matches a naive matmul: transposeA=${ta} transposeB=${tb} batch ${batchA}×${batchB}`, () => {
          for (const [m, n, k] of shapes) {
            const a = random(batchA * m * k, m * 31 + k);
            const b = random(batchB * k * n, n * 17 + k);
            const c = new Float32Array(Math.max(batchA, batchB) * m * n).fill(Number.NaN);
            addon.sgemm(a, b, c, batchA, batchB, m, n, k, ta, tb);
            // Entries are sums of k products of values in (−1, 1): float32 rounding is ~k·2⁻²⁴ relative to √k.
            expect(maxRelError(c, naive(a, b, batchA, batchB, m, n, k, ta, tb), Math.sqrt(k))).toBeLessThan(
              1e-5,
            );
          }
        });
      }
    }
  }

  it("spreads a batch of small products over the threads: right, and the same bits on 1, 2 and 3 threads", () => {
    // Attention's scores for 2 images × 3 heads at ViT-Ti/16's size (197 tokens, head width 64), with a
    // shared right-hand side for the i % batch rule too.
    const [m, n, k] = [197, 197, 64];
    const initial = addon.blasInfo().threads;
    try {
      for (const [batchA, batchB] of [
        [6, 6],
        [6, 1],
      ]) {
        const a = random(batchA * m * k, 5);
        const b = random(batchB * k * n, 6);
        const run = (threads: number) => {
          addon.setThreads(threads);
          const c = new Float32Array(batchA * m * n).fill(Number.NaN);
          addon.sgemm(a, b, c, batchA, batchB, m, n, k, false, true);
          return c;
        };
        const one = run(1);
        expect(
          maxRelError(one, naive(a, b, batchA, batchB, m, n, k, false, true), Math.sqrt(k)),
        ).toBeLessThan(1e-5);
        for (const threads of [2, 3]) {
          const got = run(threads);
          const differ = one.findIndex((v, i) => !Object.is(v, got[i]));
          expect(differ, `${threads} threads, batch ${batchA}×${batchB}: first differing element`).toBe(-1);
        }
      }
    } finally {
      addon.setThreads(initial);
    }
  });

  it("writes zeros for an empty inner dimension and nothing for empty outputs", () => {
    const c = new Float32Array(6).fill(7);
    addon.sgemm(new Float32Array(0), new Float32Array(0), c, 1, 1, 2, 3, 0, false, false);
    expect([...c]).toEqual([0, 0, 0, 0, 0, 0]);
    addon.sgemm(new Float32Array(0), new Float32Array(5), new Float32Array(0), 1, 1, 0, 5, 1, false, false);
  });

  it("dgemm computes in float64", () => {
    const a = Float64Array.from([1 + 2 ** -40, 2, 3, 4]);
    const b = Float64Array.from([1, 0, 0, 1]);
    const c = new Float64Array(4);
    addon.dgemm(a, b, c, 1, 1, 2, 2, 2, false, true);
    expect([...c]).toEqual([1 + 2 ** -40, 2, 3, 4]);
  });

  it("refuses wrong lengths, wrong types and bad dimensions with JS errors", () => {
    const a = new Float32Array(6);
    const b = new Float32Array(6);
    expect(() => addon.sgemm(a, b, new Float32Array(3), 1, 1, 2, 2, 3, false, false)).toThrow(
      /c has 3 elements/,
    );
    expect(() => addon.sgemm(a, b, new Float32Array(4), 1, 1, 2, 2, 2, false, false)).toThrow(
      /a has 6 elements/,
    );
    expect(() =>
      addon.sgemm(
        new Float64Array(6) as unknown as Float32Array,
        b,
        new Float32Array(4),
        1,
        1,
        2,
        2,
        3,
        false,
        false,
      ),
    ).toThrow(/a must be a Float32Array/);
    expect(() => addon.sgemm(a, b, new Float32Array(4), 1, 1, -2, 2, 3, false, false)).toThrow(
      /m must be an integer/,
    );
    expect(() => addon.sgemm(a, b, new Float32Array(4), 0, 1, 2, 2, 3, false, false)).toThrow(/at least 1/);
    expect(() => (addon.sgemm as unknown as (...x: unknown[]) => void)(a, b)).toThrow(
      /expected 10 arguments/,
    );
  });
});
