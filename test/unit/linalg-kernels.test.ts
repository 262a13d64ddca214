import { describe, expect, it } from "vitest";
import {
  rotateBackward,
  rotateBackward2,
  rotateForward,
  rotateForward2,
} from "../../coordinator/linalg/rotations.js";
import { tridiagonalize } from "../../coordinator/linalg/tridiagonal.js";
import { ROTATION_WORKSPACE, tridiagonalEigen } from "../../coordinator/linalg/tridiagonal-eig.js";
import {
  diff,
  make,
  mulberry32,
  naiveMul,
  naiveT,
  orthogonalityError,
  randomSymmetric,
} from "./linalg-helpers.js";

/** Rotations (c_j, s_j) = (cos θ_j, sin θ_j) stored interleaved at offset co, as the kernels expect. */
function putRotations(w: Float64Array, co: number, n: number, rng: () => number): void {
  for (let j = 0; j < n; j++) {
    const t = 2 * Math.PI * rng();
    w[co + 2 * j] = Math.cos(t);
    w[co + 2 * j + 1] = Math.sin(t);
  }
}

describe("rotation kernels", () => {
  it("rotateBackward/rotateForward apply dlasr's sequences, one rotation at a time", () => {
    const rng = mulberry32(31);
    for (const rows of [1, 5, 6, 7, 13]) {
      const n = 9;
      const w = new Float64Array(rows * n + 2 * n);
      for (let i = 0; i < rows * n; i++) w[i] = rng() - 0.5;
      putRotations(w, rows * n, n, rng);
      for (const forward of [false, true]) {
        const [first, last] = [2, 7];
        const ref = w.slice();
        // Textbook: for each j in order, columns (j, j+1) ← (s·x_{j+1} + c·x_j, c·x_{j+1} − s·x_j).
        const js = [];
        for (let j = first; j < last; j++) js.push(j);
        if (!forward) js.reverse();
        for (const j of js) {
          const c = ref[rows * n + 2 * j];
          const s = ref[rows * n + 2 * j + 1];
          for (let r = 0; r < rows; r++) {
            const x = ref[r * n + j];
            const y = ref[r * n + j + 1];
            ref[r * n + j] = s * y + c * x;
            ref[r * n + j + 1] = c * y - s * x;
          }
        }
        const got = w.slice();
        (forward ? rotateForward : rotateBackward)(got, rows, n, first, last, rows * n);
        for (let i = 0; i < rows * n; i++) expect(got[i]).toBeCloseTo(ref[i], 14);
      }
    }
  });

  it("the fused two-sequence kernels equal two single passes", () => {
    const rng = mulberry32(32);
    for (const rows of [1, 3, 4, 9, 12]) {
      for (const [first, last] of [
        [0, 1],
        [0, 10],
        [3, 5],
        [4, 10],
      ]) {
        const n = 11;
        const w = new Float64Array(rows * n + 4 * n);
        for (let i = 0; i < rows * n; i++) w[i] = rng() - 0.5;
        putRotations(w, rows * n, 2 * n, rng);
        for (const forward of [false, true]) {
          const ref = w.slice();
          const single = forward ? rotateForward : rotateBackward;
          single(ref, rows, n, first, last, rows * n);
          single(ref, rows, n, first, last, rows * n + 2 * n);
          const got = w.slice();
          (forward ? rotateForward2 : rotateBackward2)(got, rows, n, first, last, rows * n, rows * n + 2 * n);
          for (let i = 0; i < rows * n; i++) expect(Math.abs(got[i] - ref[i])).toBeLessThan(1e-15);
        }
      }
    }
  });
});

describe("tridiagonalize + tridiagonalEigen", () => {
  it("A = Q T Qᵀ with Q orthogonal", () => {
    const rng = mulberry32(33);
    for (const n of [1, 2, 3, 10, 57]) {
      const a = randomSymmetric(n, rng);
      const { d, e, q } = tridiagonalize(a.data, n);
      const qm = make(n, n, (i, j) => q[i * n + j]);
      expect(q.length).toBeGreaterThanOrEqual(n * n + ROTATION_WORKSPACE(n));
      expect(orthogonalityError(qm)).toBeLessThan(1e-13);
      const t = make(n, n, (i, j) => (i === j ? d[i] : Math.abs(i - j) === 1 ? e[Math.min(i, j)] : 0));
      expect(diff(naiveMul(naiveMul(qm, t), naiveT(qm)), a)).toBeLessThan(1e-13 * n);
    }
  });

  it("values-only and vector runs agree on the eigenvalues", () => {
    const rng = mulberry32(34);
    const n = 80;
    const d = Float64Array.from({ length: n }, () => rng());
    const e = Float64Array.from({ length: n - 1 }, () => rng() - 0.5);
    const d1 = d.slice();
    tridiagonalEigen(d1, e.slice(), null, n);
    const d2 = d.slice();
    const z = new Float64Array(n * n + ROTATION_WORKSPACE(n));
    for (let i = 0; i < n; i++) z[i * n + i] = 1;
    tridiagonalEigen(d2, e.slice(), z, n);
    const s1 = [...d1].sort((x, y) => x - y);
    const s2 = [...d2].sort((x, y) => x - y);
    s1.forEach((v, i) => {
      expect(Math.abs(v - s2[i])).toBeLessThan(1e-14);
    });
    // Z holds the eigenvectors of T: T z_j = d_j z_j.
    for (let j = 0; j < n; j++) {
      let res = 0;
      for (let i = 0; i < n; i++) {
        let tz = d[i] * z[i * n + j];
        if (i > 0) tz += e[i - 1] * z[(i - 1) * n + j];
        if (i < n - 1) tz += e[i] * z[(i + 1) * n + j];
        res += (tz - d2[j] * z[i * n + j]) ** 2;
      }
      expect(Math.sqrt(res)).toBeLessThan(1e-13);
    }
    expect(orthogonalityError(make(n, n, (i, j) => z[i * n + j]))).toBeLessThan(1e-13);
  });

  it("rejects a too-small workspace", () => {
    expect(() => tridiagonalEigen(new Float64Array(3), new Float64Array(2), new Float64Array(9), 3)).toThrow(
      RangeError,
    );
  });
});
