/**
 * The two stages of the TypeScript eigensolver (coordinator/linalg/eigh-ts.ts) on their own: the
 * Householder reduction gives A = Q T Qᵀ with Q orthogonal, and the QL iteration diagonalises a
 * tridiagonal T (T z = λ z, Z orthonormal). The whole solver is checked against analytic properties in
 * linalg.test.ts (both paths) and against LAPACK in native_linalg.test.ts.
 */
import { describe, expect, it } from "vitest";
import { tridiagonalize, tridiagonalQL } from "../../coordinator/linalg/eigh-ts.js";
import {
  diff,
  make,
  mulberry32,
  naiveMul,
  naiveT,
  orthogonalityError,
  randomSymmetric,
} from "./linalg-helpers.js";

describe("tridiagonalize + tridiagonalQL", () => {
  it("A = Q T Qᵀ with Q orthogonal", () => {
    const rng = mulberry32(33);
    for (const n of [1, 2, 3, 10, 57]) {
      const a = randomSymmetric(n, rng);
      const { d, e, qt } = tridiagonalize(a.data, n);
      const q = naiveT(make(n, n, (i, j) => qt[i * n + j]));
      expect(orthogonalityError(q)).toBeLessThan(1e-13);
      // e[i] is T[i, i−1].
      const t = make(n, n, (i, j) => (i === j ? d[i] : Math.abs(i - j) === 1 ? e[Math.max(i, j)] : 0));
      expect(diff(naiveMul(naiveMul(q, t), naiveT(q)), a)).toBeLessThan(1e-13 * n);
    }
  });

  it("diagonalises a tridiagonal matrix: T z_j = d_j z_j with Z orthonormal", () => {
    const rng = mulberry32(34);
    for (const n of [2, 5, 80]) {
      const d = Float64Array.from({ length: n }, () => rng());
      // Sub-diagonal in tridiagonalize's layout: e[i] = T[i, i−1], e[0] unused.
      const e = Float64Array.from({ length: n }, (_, i) => (i === 0 ? 0 : rng() - 0.5));
      const zt = new Float64Array(n * n);
      for (let i = 0; i < n; i++) zt[i * n + i] = 1;
      const values = d.slice();
      tridiagonalQL(values, e.slice(), zt, n);
      let trace = 0;
      for (let j = 0; j < n; j++) {
        trace += values[j] - d[j];
        // Row j of zt is the eigenvector of values[j].
        let res = 0;
        for (let i = 0; i < n; i++) {
          let tz = d[i] * zt[j * n + i];
          if (i > 0) tz += e[i] * zt[j * n + i - 1];
          if (i < n - 1) tz += e[i + 1] * zt[j * n + i + 1];
          res += (tz - values[j] * zt[j * n + i]) ** 2;
        }
        expect(Math.sqrt(res)).toBeLessThan(1e-13);
      }
      expect(Math.abs(trace)).toBeLessThan(1e-12);
      expect(orthogonalityError(make(n, n, (i, j) => zt[j * n + i]))).toBeLessThan(1e-13);
    }
  });
});
