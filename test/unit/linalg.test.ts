import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eighDescending } from "../../coordinator/linalg/eigh.js";
import { type Mat, mat } from "../../coordinator/linalg/matrix.js";
import { leftSingular, leftSingularSymmetric } from "../../coordinator/linalg/svd.js";
import {
  at,
  cols,
  diff,
  fro,
  isDescending,
  make,
  mulberry32,
  naiveMul,
  naiveT,
  orthogonalityError,
  projector,
  randomMat,
  randomOrthonormal,
  randomSymmetric,
  reconstructionError,
  residual,
  withSpectrum,
} from "./linalg-helpers.js";

const TOL = 1e-12;

/** The checks every decomposition must pass. */
function expectValid(a: Mat, tol = TOL): { values: Float64Array; vectors: Mat } {
  const r = eighDescending(a);
  expect(r.values.length).toBe(a.rows);
  expect(r.vectors.rows).toBe(a.rows);
  expect(r.vectors.cols).toBe(a.rows);
  expect(isDescending(r.values)).toBe(true);
  expect(reconstructionError(a, r.values, r.vectors)).toBeLessThan(tol);
  expect(orthogonalityError(r.vectors)).toBeLessThan(tol);
  expect(residual(a, r.values, r.vectors)).toBeLessThan(tol);
  return r;
}

/**
 * Every test runs on the default path (LAPACK when the addon is built) and on the TypeScript fallback
 * (INFLORA_LINALG=ts, read on every call).
 */
for (const path of ["default path", "INFLORA_LINALG=ts"]) {
  describe(path, () => {
    const before = process.env.INFLORA_LINALG;
    beforeAll(() => {
      if (path === "INFLORA_LINALG=ts") process.env.INFLORA_LINALG = "ts";
    });
    afterAll(() => {
      if (before === undefined) delete process.env.INFLORA_LINALG;
      else process.env.INFLORA_LINALG = before;
    });
    eighSuite();
    leftSingularSuite();
  });
}

function eighSuite(): void {
  describe("eighDescending", () => {
    it("decomposes random symmetric matrices of many sizes", () => {
      const rng = mulberry32(1);
      for (const n of [1, 2, 3, 4, 5, 7, 8, 13, 16, 31, 64, 100]) expectValid(randomSymmetric(n, rng));
    });

    it("is accurate to ~1e-14 on a 256×256 random symmetric matrix", () => {
      const rng = mulberry32(2);
      const a = randomSymmetric(256, rng);
      const { values, vectors } = expectValid(a);
      expect(reconstructionError(a, values, vectors)).toBeLessThan(1e-13);
      expect(orthogonalityError(vectors)).toBeLessThan(1e-13);
    });

    it("matches the closed-form spectrum and eigenvectors of tridiag(-1, 2, -1)", () => {
      for (const n of [1, 2, 3, 10, 50, 120]) {
        const a = make(n, n, (i, j) => (i === j ? 2 : Math.abs(i - j) === 1 ? -1 : 0));
        const { values, vectors } = expectValid(a);
        for (let j = 0; j < n; j++) {
          // Descending: the j-th value is k = n − j in 2 − 2cos(kπ/(n+1)).
          const k = n - j;
          expect(values[j]).toBeCloseTo(2 - 2 * Math.cos((k * Math.PI) / (n + 1)), 13);
          // Eigenvector sin(ikπ/(n+1)), normalised; the values are distinct, so only the sign is free.
          let dot = 0;
          let norm = 0;
          for (let i = 0; i < n; i++) {
            const x = Math.sin(((i + 1) * k * Math.PI) / (n + 1));
            dot += x * at(vectors, i, j);
            norm += x * x;
          }
          expect(Math.abs(dot) / Math.sqrt(norm)).toBeCloseTo(1, 12);
        }
      }
    });

    it("recovers a prescribed spectrum, including indefinite ones", () => {
      const rng = mulberry32(3);
      const spectrum = [7, 3.5, 1, 0.25, 0, -0.5, -2, -9];
      const { values } = expectValid(withSpectrum(spectrum, rng));
      spectrum.forEach((s, j) => {
        expect(Math.abs(values[j] - s)).toBeLessThan(1e-13 * 9);
      });
    });

    it("handles PSD covariance-like matrices with fast-decaying spectra", () => {
      const rng = mulberry32(4);
      for (const n of [40, 160]) {
        const spectrum = Array.from({ length: n }, (_, k) => 10 ** (-k / 20));
        const a = withSpectrum(spectrum, rng);
        const { values, vectors } = expectValid(a);
        // Absolute accuracy ~ε‖A‖ for every eigenvalue, relative accuracy for the well-separated top.
        for (let j = 0; j < n; j++) expect(Math.abs(values[j] - spectrum[j])).toBeLessThan(1e-13);
        for (let j = 0; j < 20; j++) expect(Math.abs(values[j] / spectrum[j] - 1)).toBeLessThan(1e-12);
        // The leading eigenvectors are well determined (gaps ≥ 10% of λ): compare each with A v = λ v.
        const top = cols(vectors, 0, 10);
        const atop = naiveMul(a, top);
        for (let j = 0; j < 10; j++) {
          let s = 0;
          for (let i = 0; i < n; i++) s += (at(atop, i, j) - values[j] * at(top, i, j)) ** 2;
          expect(Math.sqrt(s) / values[j]).toBeLessThan(1e-12);
        }
      }
    });

    it("gives an orthonormal basis of each eigenspace of a projector (exact 1s and 0s)", () => {
      const rng = mulberry32(5);
      for (const [n, k] of [
        [10, 3],
        [64, 32],
        [96, 70],
        [50, 1],
        [50, 49],
      ]) {
        const u = randomOrthonormal(n, k, rng);
        const p = projector(u);
        const { values, vectors } = expectValid(p);
        for (let j = 0; j < n; j++) expect(Math.abs(values[j] - (j < k ? 1 : 0))).toBeLessThan(1e-13);
        // Same subspace as U, and the remaining columns span its orthogonal complement.
        expect(diff(projector(cols(vectors, 0, k)), p)).toBeLessThan(1e-12);
        const complement = cols(vectors, k, n);
        expect(fro(naiveMul(naiveT(u), complement))).toBeLessThan(1e-12);
        const i = make(n, n, (r, c) => (r === c ? 1 : 0));
        expect(
          diff(
            projector(complement),
            make(n, n, (r, c) => at(i, r, c) - at(p, r, c)),
          ),
        ).toBeLessThan(1e-12);
      }
    });

    it("handles repeated eigenvalues in the middle of the spectrum and tight clusters", () => {
      const rng = mulberry32(6);
      const spectrum = [5, 2, 2, 2, 2, 1, 1 + 1e-10, 1 + 2e-10, 1 + 3e-10, 0.5, 0.5, -1, -1, -1];
      const a = withSpectrum(spectrum, rng);
      const { values, vectors } = expectValid(a);
      const sorted = [...spectrum].sort((x, y) => y - x);
      sorted.forEach((s, j) => {
        expect(Math.abs(values[j] - s)).toBeLessThan(1e-13 * 5);
      });
      // The eigenspace of 2 (columns 1..4) is determined; compare projectors, not vectors.
      const q = eighDescending(withSpectrum([2, 2, 2, 2], rng)).vectors;
      expect(orthogonalityError(q)).toBeLessThan(TOL);
      const span2 = cols(vectors, 1, 5);
      const av = naiveMul(a, span2);
      expect(
        diff(
          av,
          make(av.rows, av.cols, (i, j) => 2 * at(span2, i, j)),
        ),
      ).toBeLessThan(1e-12 * fro(a));
    });

    it("handles rank-deficient matrices", () => {
      const rng = mulberry32(7);
      for (const [n, r] of [
        [30, 5],
        [80, 40],
        [20, 1],
      ]) {
        const x = randomMat(n, r, rng);
        const a = naiveMul(x, naiveT(x));
        const { values } = expectValid(a);
        const scale = values[0];
        for (let j = 0; j < r; j++) expect(values[j]).toBeGreaterThan(1e-6 * scale);
        for (let j = r; j < n; j++) expect(Math.abs(values[j])).toBeLessThan(1e-13 * scale);
      }
    });

    it("returns zeros and an orthonormal basis for the zero matrix", () => {
      for (const n of [1, 2, 5]) {
        const { values, vectors } = expectValid(mat(n, n));
        expect([...values]).toEqual(new Array(n).fill(0));
        expect(orthogonalityError(vectors)).toBe(0);
      }
    });

    it("returns the sorted diagonal and permuted unit vectors for a diagonal matrix", () => {
      const diag = [3, -1, 7, 0, 2, 2, -5];
      const n = diag.length;
      const a = make(n, n, (i, j) => (i === j ? diag[i] : 0));
      const { values, vectors } = expectValid(a);
      expect([...values]).toEqual([...diag].sort((x, y) => y - x));
      for (let j = 0; j < n; j++) {
        // Each eigenvector is ± a unit vector e_i with diag[i] = values[j].
        let big = -1;
        for (let i = 0; i < n; i++) if (Math.abs(at(vectors, i, j)) > 0.5) big = i;
        if (values[j] !== 2) {
          expect(diag[big]).toBe(values[j]);
          expect(Math.abs(at(vectors, big, j))).toBe(1);
        }
      }
    });

    it("solves 1×1 and 2×2 exactly enough", () => {
      expect([...eighDescending(mat(1, 1, new Float64Array([-4]))).values]).toEqual([-4]);
      const r = expectValid(mat(2, 2, new Float64Array([2, 1, 1, 2])));
      expect(r.values[0]).toBeCloseTo(3, 15);
      expect(r.values[1]).toBeCloseTo(1, 15);
      expectValid(mat(2, 2, new Float64Array([1, 1e-300, 1e-300, 1])));
      expectValid(mat(2, 2, new Float64Array([0, 1, 1, 0])));
    });

    it("reads only the lower triangle", () => {
      const rng = mulberry32(8);
      const a = randomSymmetric(12, rng);
      const garbage = make(12, 12, (i, j) => (j > i ? Number.NaN : at(a, i, j)));
      const r1 = eighDescending(a);
      const r2 = eighDescending(garbage);
      expect([...r2.values]).toEqual([...r1.values]);
      expect([...r2.vectors.data]).toEqual([...r1.vectors.data]);
    });

    it("does not modify its input", () => {
      const rng = mulberry32(9);
      const a = randomSymmetric(20, rng);
      const copy = a.data.slice();
      eighDescending(a);
      expect(a.data).toEqual(copy);
    });

    it("scales: huge and tiny matrices", () => {
      const rng = mulberry32(10);
      const a = randomSymmetric(15, rng);
      const ref = eighDescending(a).values;
      for (const s of [1e300, 1e-300, 2 ** 900, 1e-310]) {
        const b = make(15, 15, (i, j) => at(a, i, j) * s);
        const { values, vectors } = eighDescending(b);
        expect(orthogonalityError(vectors)).toBeLessThan(TOL);
        for (let j = 0; j < 15; j++)
          expect(Math.abs(values[j] / s - ref[j])).toBeLessThan(s < 1e-300 ? 1e-6 : 1e-13);
      }
    });

    it("rejects non-square and non-finite input", () => {
      expect(() => eighDescending(mat(2, 3))).toThrow(RangeError);
      expect(() => eighDescending(mat(2, 2, new Float64Array([1, 0, Number.NaN, 1])))).toThrow(/non-finite/);
      expect(() => eighDescending(mat(1, 1, new Float64Array([Number.POSITIVE_INFINITY])))).toThrow(
        /non-finite/,
      );
      expect(eighDescending(mat(0, 0)).values.length).toBe(0);
    });

    it("survives classic hard cases: Wilkinson W21+, graded and arrowhead matrices", () => {
      // W21+: pairs of eigenvalues agreeing to ~1e-14 — orthogonality within each pair is the test.
      const w = make(21, 21, (i, j) => (i === j ? Math.abs(10 - i) : Math.abs(i - j) === 1 ? 1 : 0));
      expectValid(w);
      // Strongly graded: entries spanning 30 orders of magnitude.
      const g = make(12, 12, (i, j) => 10 ** (-(i + j) * 1.25) * (i === j ? 1 : 0.5));
      expectValid(g);
      // Arrowhead.
      const h = make(40, 40, (i, j) => (i === j ? i : i === 0 || j === 0 ? 1 : 0));
      expectValid(h);
    });
  });
}

function leftSingularSuite(): void {
  describe("leftSingular", () => {
    function expectSvdProperties(x: Mat): ReturnType<typeof leftSingular> {
      const r = leftSingular(x);
      const m = x.rows;
      expect(r.u.rows).toBe(m);
      expect(r.u.cols).toBe(m);
      expect(r.s.length).toBe(m);
      expect(isDescending(r.s)).toBe(true);
      expect(orthogonalityError(r.u)).toBeLessThan(TOL);
      const xxt = naiveMul(x, naiveT(x));
      const nx = fro(xxt);
      const xtu = naiveMul(naiveT(x), r.u);
      for (let j = 0; j < m; j++) {
        expect(r.s2[j]).toBeGreaterThanOrEqual(0);
        expect(r.s[j]).toBe(Math.sqrt(r.s2[j]));
        // X Xᵀ u = s² u.
        let res = 0;
        for (let i = 0; i < m; i++) {
          let v = 0;
          for (let k = 0; k < m; k++) v += at(xxt, i, k) * at(r.u, k, j);
          res += (v - r.s2[j] * at(r.u, i, j)) ** 2;
        }
        expect(Math.sqrt(res) / nx).toBeLessThan(TOL);
        // ‖Xᵀ u_j‖ = s_j, to within √(ε‖X Xᵀ‖) for the tiny ones (see svd.ts).
        let nn = 0;
        for (let i = 0; i < x.cols; i++) nn += at(xtu, i, j) ** 2;
        expect(Math.abs(Math.sqrt(nn) - r.s[j])).toBeLessThan(1e-12 * r.s[0] + 1e-7 * Math.sqrt(nx));
      }
      return r;
    }

    it("matches a prescribed SVD for tall and wide X", () => {
      const rng = mulberry32(11);
      for (const [m, n] of [
        [12, 5],
        [5, 12],
        [30, 30],
        [64, 20],
      ]) {
        const k = Math.min(m, n);
        const u = randomOrthonormal(m, k, rng);
        const v = randomOrthonormal(n, k, rng);
        const sigma = Array.from({ length: k }, (_, i) => 10 / (i + 1));
        const x = naiveMul(
          make(m, k, (i, j) => at(u, i, j) * sigma[j]),
          naiveT(v),
        );
        const r = expectSvdProperties(x);
        for (let j = 0; j < k; j++) expect(Math.abs(r.s[j] / sigma[j] - 1)).toBeLessThan(1e-12);
        for (let j = k; j < m; j++) expect(r.s[j]).toBeLessThan(1e-6);
        // The leading singular subspaces agree (compare projectors).
        expect(diff(projector(cols(r.u, 0, k)), projector(u))).toBeLessThan(1e-12);
      }
    });

    it("handles random and rank-deficient non-symmetric matrices", () => {
      const rng = mulberry32(12);
      expectSvdProperties(randomMat(40, 40, rng));
      expectSvdProperties(randomMat(25, 60, rng));
      const low = naiveMul(randomMat(30, 3, rng), randomMat(3, 30, rng));
      const r = expectSvdProperties(low);
      for (let j = 3; j < 30; j++) expect(r.s[j]).toBeLessThan(1e-6 * r.s[0]);
    });

    it("handles 1×n, n×1 and zero X", () => {
      const row = mat(1, 4, new Float64Array([3, 0, 4, 0]));
      expect([...leftSingular(row).s]).toEqual([5]);
      const col = mat(3, 1, new Float64Array([1, 2, 2]));
      const r = expectSvdProperties(col);
      expect(r.s[0]).toBeCloseTo(3, 14);
      const z = leftSingular(mat(3, 2));
      expect([...z.s]).toEqual([0, 0, 0]);
      expect(orthogonalityError(z.u)).toBe(0);
    });

    it("leftSingularSymmetric agrees with leftSingular on a symmetric indefinite matrix", () => {
      const rng = mulberry32(13);
      const spectrum = [4, -3, 2, -1, 0.5, 0.1];
      const c = withSpectrum(spectrum, rng);
      const a = leftSingular(c);
      const b = leftSingularSymmetric(c);
      expect(orthogonalityError(b.u)).toBeLessThan(TOL);
      const abs = spectrum.map(Math.abs).sort((x, y) => y - x);
      abs.forEach((s, j) => {
        expect(b.s[j]).toBeCloseTo(s, 13);
        expect(b.s2[j]).toBeCloseTo(s * s, 13);
        expect(a.s[j]).toBeCloseTo(s, 12);
      });
      // Distinct |λ|: each singular direction agrees up to sign.
      for (let j = 0; j < spectrum.length; j++) {
        expect(diff(projector(cols(a.u, j, j + 1)), projector(cols(b.u, j, j + 1)))).toBeLessThan(1e-12);
      }
    });

    it("leftSingularSymmetric keeps relative accuracy where leftSingular cannot", () => {
      const rng = mulberry32(14);
      const spectrum = Array.from({ length: 30 }, (_, k) => 10 ** (-k / 4));
      const c = withSpectrum(spectrum, rng);
      const b = leftSingularSymmetric(c);
      // ~ε‖C‖ absolute for leftSingularSymmetric; through C² only ~√ε‖C‖.
      for (let j = 0; j < 30; j++) expect(Math.abs(b.s[j] - spectrum[j])).toBeLessThan(1e-14);
      const a = leftSingular(c);
      for (let j = 0; j < 30; j++) expect(Math.abs(a.s[j] - spectrum[j])).toBeLessThan(1e-7);
    });
  });
}
