/**
 * The LAPACK-backed float64 linear algebra against the project's own TypeScript solver: the same
 * eigenvalues and the same subspaces (projectors), reconstruction and orthogonality at the 1e-13 level;
 * the selective decomposition (only the picked eigenvectors) against the full one; the column-selecting
 * SVDs; the DualGPM update and the design of B on both paths. Needs `npm run build:native`; without the
 * addon these tests fail and say how to build it.
 */
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { designB } from "../../coordinator/inflora/design.js";
import { type LayerMemory, updateDualGpm } from "../../coordinator/inflora/dualgpm.js";
import { eighDescending, eighDescendingTs } from "../../coordinator/linalg/eigh.js";
import { eighPicked } from "../../coordinator/linalg/eigh-select.js";
import { lapack } from "../../coordinator/linalg/lapack.js";
import { type Mat, mat, matmulABt } from "../../coordinator/linalg/matrix.js";
import { leftSingular, leftSingularSymmetric } from "../../coordinator/linalg/svd.js";
import { closeThreadMap, mapOnThreads } from "../../coordinator/linalg/thread-map.js";
import { type NativeAddon, requireNative } from "../../native/index.js";
import {
  cols,
  diff,
  fro,
  isDescending,
  mulberry32,
  orthogonalityError,
  projector,
  randomMat,
  randomOrthonormal,
  randomSymmetric,
  reconstructionError,
  withSpectrum,
} from "./linalg-helpers.js";

let addon: NativeAddon;

// Per test, so that without the addon every test fails with the build instructions (none is skipped).
beforeEach(() => {
  addon = requireNative();
});

/** A covariance with a ViT-like decaying spectrum. */
function covariance(n: number, seed: number): Mat {
  const g = randomMat(n, n, mulberry32(seed));
  for (let i = 0; i < n; i++) for (let k = 0; k < n; k++) g.data[i * n + k] *= 10 ** (-k / 40) / Math.sqrt(n);
  return matmulABt(g, g);
}

/** ‖P_a − P_b‖_F for the spans of the first k columns. */
function subspaceDistance(a: Mat, b: Mat, k: number): number {
  return diff(projector(cols(a, 0, k)), projector(cols(b, 0, k)));
}

describe("LAPACK eigendecomposition", () => {
  it("is the path eighDescending takes when the addon is built", () => {
    expect(lapack()).toBe(addon);
  });

  it("agrees with the TypeScript solver: eigenvalues, subspaces, reconstruction", () => {
    for (const [n, seed] of [
      [1, 1],
      [7, 2],
      [48, 3],
      [200, 4],
    ]) {
      const a = randomSymmetric(n, mulberry32(seed));
      const native = eighDescending(a);
      const ts = eighDescendingTs(a);
      expect(isDescending(native.values)).toBe(true);
      const scale = Math.max(...ts.values.map(Math.abs));
      for (let j = 0; j < n; j++)
        expect(Math.abs(native.values[j] - ts.values[j])).toBeLessThan(1e-13 * n * scale);
      expect(reconstructionError(a, native.values, native.vectors)).toBeLessThan(1e-13);
      expect(orthogonalityError(native.vectors)).toBeLessThan(1e-13);
      // Random spectra are well separated: every leading subspace is the same.
      for (const k of [1, Math.ceil(n / 3), n]) {
        expect(subspaceDistance(native.vectors, ts.vectors, k)).toBeLessThan(1e-11);
      }
    }
  });

  it("handles projectors (exact 0s and 1s), repeated eigenvalues, zero, scaled and bad input", () => {
    const rng = mulberry32(5);
    const u = randomOrthonormal(60, 25, rng);
    const { values, vectors } = eighDescending(projector(u));
    for (let j = 0; j < 60; j++) expect(Math.abs(values[j] - (j < 25 ? 1 : 0))).toBeLessThan(1e-13);
    expect(diff(projector(cols(vectors, 0, 25)), projector(u))).toBeLessThan(1e-12);
    const rep = withSpectrum([3, 2, 2, 2, 1, 1 + 1e-10, -1, -1], rng);
    expect(reconstructionError(rep, eighDescending(rep).values, eighDescending(rep).vectors)).toBeLessThan(
      1e-13,
    );
    expect([...eighDescending(mat(3, 3)).values]).toEqual([0, 0, 0]);
    const tiny = randomSymmetric(20, mulberry32(6));
    for (let i = 0; i < tiny.data.length; i++) tiny.data[i] *= 1e-310;
    const t = eighDescending(tiny);
    expect(t.values.every(Number.isFinite)).toBe(true);
    expect(orthogonalityError(t.vectors)).toBeLessThan(1e-13);
    expect(() => eighDescending(mat(2, 2, Float64Array.from([1, 0, Number.NaN, 1])))).toThrow(/non-finite/);
    expect(() => eighDescending(mat(2, 3))).toThrow(/square/);
    expect(() => addon.dsyevd(new Float64Array(3), 2)).toThrow(/a has 3 elements/);
    expect(() => addon.eighSelect(new Float64Array(4), 2, () => [0, 3])).toThrow(
      /range end must be an integer/,
    );
    expect(() => addon.eighSelect(new Float64Array(4), 2, () => "x" as unknown as number[])).toThrow(/array/);
    expect(() =>
      addon.eighSelect(new Float64Array(4), 2, () => {
        throw new Error("from the selector");
      }),
    ).toThrow(/from the selector/);
  });

  it("computes only the picked eigenvectors, equal to the full decomposition's", () => {
    const c = covariance(150, 7);
    const full = eighDescending(c);
    for (const want of [[0, 1, 2, 3, 4], [149, 148], [0, 149, 75, 3], []] as number[][]) {
      const picked = eighPicked(c, () => want);
      for (let j = 0; j < 150; j++)
        expect(Math.abs(picked.values[j] - full.values[j])).toBeLessThan(1e-13 * full.values[0]);
      expect(picked.vectors.cols).toBe(want.length);
      for (let j = 0; j < want.length; j++) {
        let dot = 0;
        for (let r = 0; r < 150; r++)
          dot += picked.vectors.data[r * want.length + j] * full.vectors.data[r * 150 + want[j]];
        expect(Math.abs(Math.abs(dot) - 1)).toBeLessThan(1e-10);
      }
    }
    expect(() => eighPicked(c, () => [3, 3])).toThrow(/repeated/);
  });
});

describe("column-selecting SVDs", () => {
  it("leftSingular with a selector: the selected columns of the full U, all singular values", () => {
    const x = randomMat(90, 140, mulberry32(8));
    const full = leftSingular(x);
    const part = leftSingular(x, (s2) => {
      expect(s2.length).toBe(90);
      return [0, 12];
    });
    expect(part.u.cols).toBe(12);
    for (let j = 0; j < 90; j++) expect(Math.abs(part.s2[j] - full.s2[j])).toBeLessThan(1e-10 * full.s2[0]);
    expect(subspaceDistance(part.u, full.u, 12)).toBeLessThan(1e-10);
    const tail = leftSingular(x, () => [80, 90]);
    expect(diff(projector(tail.u), projector(cols(full.u, 80, 90)))).toBeLessThan(1e-9);
  });

  it("leftSingularSymmetric with a selector orders by |λ| on an indefinite matrix", () => {
    const c = withSpectrum([9, -8, 7, -6, 5, 1, -0.5, 0.25], mulberry32(9));
    const full = leftSingularSymmetric(c);
    for (const [start, end] of [
      [0, 3],
      [2, 6],
      [5, 8],
    ] as [number, number][]) {
      const part = leftSingularSymmetric(c, () => [start, end]);
      for (let j = 0; j < 8; j++) expect(Math.abs(part.s[j] - full.s[j])).toBeLessThan(1e-13 * full.s[0]);
      expect(diff(projector(part.u), projector(cols(full.u, start, end)))).toBeLessThan(1e-12);
      for (let j = 0; j < end - start; j++) {
        let dot = 0;
        for (let r = 0; r < 8; r++)
          dot += part.u.data[r * (end - start) + j] * full.u.data[r * 8 + start + j];
        expect(Math.abs(Math.abs(dot) - 1)).toBeLessThan(1e-12);
      }
    }
    expect(() => leftSingularSymmetric(c, () => [3, 9])).toThrow(/not a column range/);
  });
});

describe("the central linear algebra on both paths", () => {
  it("designs the same B and keeps the same DualGPM subspaces with LAPACK as with TypeScript", () => {
    const D = 64;
    const covs = [0, 1, 2].map((t) => [0, 1].map((i) => covariance(D, 100 + 10 * t + i)));
    const run = (useTs: boolean) => {
      const before = process.env.INFLORA_LINALG;
      // The TypeScript reference: the same code with every decomposition in TypeScript.
      if (useTs) process.env.INFLORA_LINALG = "ts";
      let memory: (LayerMemory | undefined)[] = [undefined, undefined];
      const out: { B: Float64Array[]; memory: LayerMemory[] }[] = [];
      try {
        for (let t = 0; t < 3; t++) {
          const B = covs[t].map((c, i) => designB(c, 4, t === 0 ? undefined : memory[i]));
          memory = updateDualGpm(memory, covs[t], { threshold: 0.9 + 0.03 * t, gpmOnly: false });
          out.push({ B, memory: memory as LayerMemory[] });
        }
      } finally {
        if (before === undefined) delete process.env.INFLORA_LINALG;
        else process.env.INFLORA_LINALG = before;
      }
      return out;
    };
    const native = run(false);
    const ts = run(true);
    expect(lapack()).toBe(addon);
    for (let t = 0; t < 3; t++) {
      for (let i = 0; i < 2; i++) {
        const a = native[t].memory[i];
        const b = ts[t].memory[i];
        expect(a.type).toBe(b.type);
        expect(a.basis.cols).toBe(b.basis.cols);
        expect(fro(a.basis)).toBeGreaterThan(0);
        expect(diff(projector(a.basis), projector(b.basis))).toBeLessThan(1e-9);
        expect(diff(projector(mat(4, D, native[t].B[i])), projector(mat(4, D, ts[t].B[i])))).toBeLessThan(
          1e-9,
        );
      }
    }
  });
});

describe("per-layer work on worker threads", () => {
  afterAll(async () => {
    await closeThreadMap();
  });

  it("gives bitwise the results of calling the functions in a loop", async () => {
    const D = 96;
    const pre = [0, 1, 2].map((i) => covariance(D, 300 + i));
    const post = [0, 1, 2].map((i) => covariance(D, 400 + i));
    const opts = { threshold: 0.9, gpmOnly: false };
    const dualgpm = new URL("../../coordinator/inflora/dualgpm.js", import.meta.url);
    const design = new URL("../../coordinator/inflora/design.js", import.meta.url);
    const first = updateDualGpm([undefined, undefined, undefined], post, opts);
    const sequentialB = pre.map((c, i) => designB(c, 4, first[i]));
    const parallelB = await mapOnThreads<Float64Array>(
      design,
      "designB",
      pre.map((c, i) => [c, 4, first[i]]),
      { threads: 2 },
    );
    const layers = await mapOnThreads<LayerMemory>(
      dualgpm,
      "updateLayer",
      post.map((c) => [undefined, c, opts]),
      { threads: 2 },
    );
    for (let i = 0; i < 3; i++) {
      expect(parallelB[i]).toEqual(sequentialB[i]);
      expect(layers[i].type).toBe(first[i].type);
      expect(layers[i].basis).toEqual(first[i].basis);
    }
    await expect(mapOnThreads(design, "noSuchFunction", [[1], [2]], { threads: 2 })).rejects.toThrow(
      /no exported function noSuchFunction/,
    );
  });
});
