/**
 * Cholesky factor A = L Lᵀ of a symmetric positive definite matrix, in float64, blocked so that the
 * trailing updates (nearly all the work) are matrix products through BLAS when the addon is built
 * (matrix.ts). Only the lower triangle of A is read, as LAPACK's potrf('L') does.
 */
import { mat, matmulABt } from "./matrix.js";

/** Raised when a pivot is not positive: the matrix is not (numerically) positive definite. */
export class NotPositiveDefiniteError extends Error {
  override readonly name = "NotPositiveDefiniteError";
  constructor(
    /** Row of the failing pivot. */
    readonly pivot: number,
    /** What was left on the diagonal there (≤ 0 or not finite). */
    readonly value: number,
  ) {
    super(`not positive definite: pivot ${pivot} is ${value}`);
  }
}

/** Columns per block: small enough for the panel loops, large enough for BLAS to pay off. */
const BLOCK = 64;

/** L (row-major n×n, zero above the diagonal) with A = L Lᵀ; A is read from `a` and not modified. */
export function choleskyLower(a: ArrayLike<number>, n: number): Float64Array {
  if (a.length !== n * n)
    throw new RangeError(`cholesky: ${n}×${n} needs ${n * n} elements, got ${a.length}`);
  const l = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) l[i * n + j] = a[i * n + j];
  for (let k0 = 0; k0 < n; k0 += BLOCK) {
    const k1 = Math.min(k0 + BLOCK, n);
    const b = k1 - k0;
    // The diagonal block L11 (earlier blocks' contributions were already subtracted by the trailing updates).
    for (let j = k0; j < k1; j++) {
      const rj = j * n;
      let s = l[rj + j];
      for (let p = k0; p < j; p++) s -= l[rj + p] * l[rj + p];
      if (!(s > 0) || !Number.isFinite(s)) throw new NotPositiveDefiniteError(j, s);
      const d = Math.sqrt(s);
      l[rj + j] = d;
      for (let i = j + 1; i < k1; i++) {
        const ri = i * n;
        let t = l[ri + j];
        for (let p = k0; p < j; p++) t -= l[ri + p] * l[rj + p];
        l[ri + j] = t / d;
      }
    }
    const m = n - k1;
    if (m === 0) break;
    // The panel L21 = A21 L11⁻ᵀ as one product, then the trailing update A22 −= L21 L21ᵀ.
    const a21 = new Float64Array(m * b);
    for (let i = 0; i < m; i++) a21.set(l.subarray((k1 + i) * n + k0, (k1 + i) * n + k1), i * b);
    const l21 = matmulABt(mat(m, b, a21), mat(b, b, invertLower(l, n, k0, b))).data;
    for (let i = 0; i < m; i++) l.set(l21.subarray(i * b, (i + 1) * b), (k1 + i) * n + k0);
    const P = mat(m, b, l21);
    const s = matmulABt(P, P).data;
    for (let i = 0; i < m; i++) {
      const ri = (k1 + i) * n + k1;
      for (let j = 0; j <= i; j++) l[ri + j] -= s[i * m + j];
    }
  }
  return l;
}

/** The inverse of the lower-triangular b×b block of `l` (row stride n) at (k0, k0), row-major b×b. */
function invertLower(l: Float64Array, n: number, k0: number, b: number): Float64Array {
  const inv = new Float64Array(b * b);
  // Column j of the inverse by forward substitution on L x = e_j.
  for (let j = 0; j < b; j++) {
    inv[j * b + j] = 1 / l[(k0 + j) * n + k0 + j];
    for (let i = j + 1; i < b; i++) {
      const ri = (k0 + i) * n + k0;
      let t = 0;
      for (let p = j; p < i; p++) t -= l[ri + p] * inv[p * b + j];
      inv[i * b + j] = t / l[ri + i];
    }
  }
  return inv;
}
