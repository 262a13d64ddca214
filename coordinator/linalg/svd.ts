/**
 * Singular vectors through symmetric eigendecompositions. Going through X Xᵀ costs one m×m eigh
 * instead of a full SVD, at the price of absolute (not relative) accuracy in the squared singular
 * values: s_i² is accurate to about ε·s_max², so singular values below ~1e-8·s_max are noise and
 * their vectors are only determined as a subspace. The InfLoRA/DualGPM criteria only use the leading
 * directions and energy fractions of S², where this is harmless.
 */

import { eighDescending } from "./eigh.js";
import { type Mat, mat, matmulABt } from "./matrix.js";

export interface LeftSingular {
  /** m×m, orthonormal columns: the left singular vectors, in the order of s. */
  readonly u: Mat;
  /** Singular values, descending (length m; those beyond min(m, n) are 0 up to rounding). */
  readonly s: Float64Array;
  /** Squared singular values = eigenvalues of X Xᵀ clipped at 0 — use these rather than s². */
  readonly s2: Float64Array;
}

/**
 * Left singular vectors and singular values of X (m×n, any shape) as numpy's np.linalg.svd gives them
 * (descending), computed through the symmetric eigendecomposition of X Xᵀ (m×m). Singular values =
 * sqrt(max(λ, 0)). Returns all m columns (like full_matrices=True for U); for m > n the last m − n
 * span the null space of Xᵀ. Signs are arbitrary.
 */
export function leftSingular(x: Mat): LeftSingular {
  const { values, vectors } = eighDescending(matmulABt(x, x));
  return fromEigen(values, vectors);
}

/**
 * The same for a symmetric matrix C (only its lower triangle is read), without forming C Cᵀ = C²:
 * the left singular vectors of C are its eigenvectors ordered by |λ|, and s = |λ|. Every s is then
 * accurate to ~ε·‖C‖ instead of ~√ε·‖C‖ for the small ones, at half the cost (no product). Use it when
 * the matrix fed to the SVD is itself symmetric, e.g. a covariance (the t = 0 design of B, or the
 * DualGPM SVDs of C); Ĉ = C − M C is not symmetric and needs leftSingular.
 */
export function leftSingularSymmetric(c: Mat): LeftSingular {
  const { values, vectors } = eighDescending(c);
  const m = values.length;
  const order = Array.from({ length: m }, (_, i) => i);
  order.sort((a, b) => Math.abs(values[b]) - Math.abs(values[a]) || a - b);
  const s = new Float64Array(m);
  const s2 = new Float64Array(m);
  const u = new Float64Array(m * m);
  for (let j = 0; j < m; j++) {
    const v = values[order[j]];
    s[j] = Math.abs(v);
    s2[j] = v * v;
  }
  for (let r = 0; r < m; r++) {
    const o = r * m;
    for (let j = 0; j < m; j++) u[o + j] = vectors.data[o + order[j]];
  }
  return { u: mat(m, m, u), s, s2 };
}

function fromEigen(values: Float64Array, vectors: Mat): LeftSingular {
  const m = values.length;
  const s = new Float64Array(m);
  const s2 = new Float64Array(m);
  for (let j = 0; j < m; j++) {
    const l = Math.max(values[j], 0);
    s2[j] = l;
    s[j] = Math.sqrt(l);
  }
  return { u: vectors, s, s2 };
}
