/**
 * The adapter module against naive float64 sums: stacked factors give Σ A_s B_s in one product, the host
 * fold stays within one float32 rounding of the exact W + Σ A_s B_s, the device-product fold adds in
 * float64 and rounds once, and heads stack in task order.
 */
import { describe, expect, it } from "vitest";
import {
  addRounded,
  concatHeads,
  foldAdapters,
  type StackedFactors,
  stackFactors,
} from "../../common/adapters.js";
import { exactProduct, randomAdapterSet } from "../helpers/adapters.js";
import { randomArray } from "../helpers/tiny_vit.js";

const D = 6;

const sets = [randomAdapterSet(D, 2, 100), randomAdapterSet(D, 3, 200)];
const base = randomArray(D * D, 7);

describe("stackFactors", () => {
  it("puts the factors side by side so that one product is Σ A_s B_s", () => {
    for (const which of ["k", "v"] as const) {
      const { A, B, R } = stackFactors(sets, 1, which, D);
      expect(R).toBe(5);
      const want = exactProduct(sets, D, 1, which);
      for (let i = 0; i < D; i++) {
        for (let j = 0; j < D; j++) {
          let got = 0;
          for (let k = 0; k < R; k++) got += A[i * R + k] * B[k * D + j];
          expect(got).toBeCloseTo(want[i * D + j], 12);
        }
      }
    }
  });
});

describe("foldAdapters", () => {
  it("on the host: within one float32 rounding of the exact W + Σ A_s B_s", () => {
    for (const which of ["k", "v"] as const) {
      const folded = foldAdapters(base, D, sets, 0, which);
      const p = exactProduct(sets, D, 0, which);
      for (let n = 0; n < D * D; n++) {
        const exact = base[n] + p[n];
        expect(Math.abs(folded[n] - exact)).toBeLessThanOrEqual(Math.abs(exact) * 2 ** -24 + 1e-12);
      }
    }
  });

  it("with a device product: W + product, added in float64 and rounded once", () => {
    const seen: StackedFactors[] = [];
    const product = (f: StackedFactors) => {
      seen.push(f);
      return Float32Array.from(exactProduct(sets, D, 1, "v"));
    };
    const folded = foldAdapters(base, D, sets, 1, "v", product);
    expect(seen.map((f) => f.R)).toEqual([5]);
    const delta = Float32Array.from(exactProduct(sets, D, 1, "v"));
    expect(Array.from(folded)).toEqual(Array.from(base, (w, i) => Math.fround(w + delta[i])));
    expect(Array.from(addRounded(base, delta))).toEqual(Array.from(folded));
  });

  it("without adapters: the base itself", () => {
    expect(foldAdapters(base, D, [], 0, "k")).toBe(base);
    expect(foldAdapters(base, D, [], 0, "k", () => new Float32Array(D * D))).toBe(base);
  });
});

describe("concatHeads", () => {
  it("stacks weights and biases in task order", () => {
    const h = (classes: number, seed: number) => ({
      classes,
      weight: randomArray(classes * D, seed),
      bias: randomArray(classes, seed + 1),
    });
    const heads = [h(2, 1), h(3, 2)];
    const all = concatHeads(heads, D);
    expect(all.classes).toBe(5);
    expect(Array.from(all.weight)).toEqual([...heads[0].weight, ...heads[1].weight]);
    expect(Array.from(all.bias)).toEqual([...heads[0].bias, ...heads[1].bias]);
  });
});
