/**
 * The addon's elementwise entry points called directly, against naive JS: broadcasting walks, transposes
 * of every small permutation, reductions over [outer, reduce, inner]; and bad input refused with JS errors
 * (never a crash). Needs `npm run build:native`; without the addon these tests fail and say how to build it.
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
  return Float32Array.from({ length: n }, () => rnd() * 4 - 2);
}

const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

function strides(s: readonly number[]): number[] {
  const out = new Array<number>(s.length);
  let c = 1;
  for (let i = s.length - 1; i >= 0; i--) {
    out[i] = c;
    c *= s[i];
  }
  return out;
}

/** Index into a (broadcast) operand of shape `s` for the output multi-index `idx`. */
function offset(idx: readonly number[], s: readonly number[]): number {
  const st = strides(s);
  let o = 0;
  for (let i = 0; i < s.length; i++) {
    const d = idx[idx.length - s.length + i];
    o += (s[i] === 1 ? 0 : d) * st[i];
  }
  return o;
}

function unravel(i: number, s: readonly number[]): number[] {
  const st = strides(s);
  return s.map((_, d) => Math.floor(i / st[d]) % s[d]);
}

describe("native elementwise kernels", () => {
  it("binary ops broadcast like numpy", () => {
    const cases: [number[], number[], number[]][] = [
      [[3, 4], [4], [3, 4]],
      [
        [3, 1],
        [1, 4],
        [3, 4],
      ],
      [
        [2, 1, 3, 1],
        [5, 1, 4],
        [2, 5, 3, 4],
      ],
      [[], [2, 3], [2, 3]],
      [[1], [1], [1]],
    ];
    const ops = {
      add: (a: number, b: number) => a + b,
      mul: (a: number, b: number) => a * b,
      div: (a: number, b: number) => a / b,
    };
    for (const [sa, sb, so] of cases) {
      const a = random(size(sa), 1);
      const b = random(size(sb), 2);
      for (const [op, f] of Object.entries(ops) as [keyof typeof ops, (a: number, b: number) => number][]) {
        const out = new Float32Array(size(so));
        addon.binary(op, a, sa, b, sb, out, so);
        for (let i = 0; i < out.length; i++) {
          const idx = unravel(i, so);
          expect(out[i]).toBe(Math.fround(f(a[offset(idx, sa)], b[offset(idx, sb)])));
        }
      }
    }
  });

  it("transpose handles every permutation of a rank-4 tensor", () => {
    const shape = [2, 3, 1, 4];
    const x = random(size(shape), 3);
    const perms: number[][] = [];
    const permute = (rest: number[], acc: number[]) => {
      if (rest.length === 0) perms.push(acc);
      for (const r of rest)
        permute(
          rest.filter((v) => v !== r),
          [...acc, r],
        );
    };
    permute([0, 1, 2, 3], []);
    for (const perm of perms) {
      const outShape = perm.map((p) => shape[p]);
      const out = new Float32Array(x.length);
      addon.transpose(x, shape, perm, out);
      const st = strides(shape);
      for (let i = 0; i < out.length; i++) {
        const idx = unravel(i, outShape);
        let src = 0;
        for (let d = 0; d < 4; d++) src += idx[d] * st[perm[d]];
        expect(out[i]).toBe(x[src]);
      }
    }
  });

  it("reductions over the middle of [outer, reduce, inner]", () => {
    for (const [A, R, B] of [
      [1, 7, 1],
      [3, 5, 1],
      [1, 6, 4],
      [2, 3, 5],
    ]) {
      const x = random(A * R * B, A + R + B);
      for (const op of ["sum", "mean", "max", "min"] as const) {
        const out = new Float32Array(A * B);
        addon.reduce(op, x, A, R, B, out);
        for (let a = 0; a < A; a++) {
          for (let b = 0; b < B; b++) {
            const vals = Array.from({ length: R }, (_, r) => x[(a * R + r) * B + b]);
            const sum = vals.reduce((p, q) => p + q, 0);
            const want = { sum, mean: sum / R, max: Math.max(...vals), min: Math.min(...vals) }[op];
            expect(Math.abs(out[a * B + b] - want)).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(want)));
          }
        }
      }
    }
  });

  it("refuses bad input with JS errors", () => {
    const f = new Float32Array(6);
    expect(() => addon.binary("add", f, [2, 3], f, [3, 2], new Float32Array(6), [2, 3])).toThrow(
      /do not broadcast/,
    );
    expect(() => addon.binary("pow" as "add", f, [6], f, [6], new Float32Array(6), [6])).toThrow(
      /unknown op/,
    );
    expect(() => addon.binary("add", f, [2, 3], f, [2, 3], new Float32Array(5), [2, 3])).toThrow(/out has 5/);
    expect(() => addon.binary("add", f, [2, 3], f, [2, 3], new Float32Array(6), [2 ** 40, 2 ** 40])).toThrow(
      /out has 6/,
    );
    expect(() => addon.unary("erf", f, new Float32Array(5))).toThrow(/out has 5/);
    expect(() => addon.softmax(f, new Float32Array(6), 4, 2)).toThrow(/x has 6/);
    expect(() => addon.transpose(f, [2, 3], [0, 0], new Float32Array(6))).toThrow(/not a permutation/);
    expect(() => addon.transpose(f, [2, 3], [0, 1, 2], new Float32Array(6))).toThrow(/differ in length/);
    expect(() => addon.reduce("max", new Float32Array(0), 2, 0, 3, new Float32Array(6))).toThrow(
      /empty axis/,
    );
    expect(() => addon.reduce("sum", f, 2 ** 40, 2 ** 40, 2 ** 40, new Float32Array(6))).toThrow(/x has 6/);
    expect(() => addon.addN([], new Float32Array(1))).toThrow(/non-empty/);
    expect(() => addon.addN([f, new Float32Array(5)], new Float32Array(6))).toThrow(/has 5/);
    expect(() => addon.unary("neg", [1, 2] as unknown as Float32Array, new Float32Array(2))).toThrow(
      /Float32Array/,
    );
  });
});
