/**
 * Singular vectors through symmetric eigendecompositions. Going through X Xᵀ costs one m×m eigh
 * instead of a full SVD, at the price of absolute (not relative) accuracy in the squared singular
 * values: s_i² is accurate to about ε·s_max², so singular values below ~1e-8·s_max are noise and
 * their vectors are only determined as a subspace. The InfLoRA/DualGPM criteria only use the leading
 * directions and energy fractions of S², where this is harmless.
 */

import { eighDescending } from "./eigh.js";
import { eighPicked } from "./eigh-select.js";
import { type Mat, mat, matmulABt } from "./matrix.js";

/**
 * Which columns of U a caller keeps, decided from all squared singular values (descending): the
 * half-open range [start, end). With a selector only those columns are computed — with LAPACK that
 * skips most of the work when few are kept (see eigh-select.ts).
 */
export type ColumnSelector = (s2: Float64Array) => readonly [start: number, end: number];

export interface LeftSingular {
  /**
   * m×m, orthonormal columns: the left singular vectors, in the order of s. With a ColumnSelector, only
   * its columns [start, end): m×(end − start).
   */
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
export function leftSingular(x: Mat, select?: ColumnSelector): LeftSingular {
  const g = matmulABt(x, x);
  if (!select) {
    const { values, vectors } = eighDescending(g);
    return fromEigen(values, vectors);
  }
  let s2: Float64Array = new Float64Array(0);
  const { values, vectors } = eighPicked(g, (v) => {
    s2 = squares(v);
    return range(select(s2), v.length);
  });
  return { u: vectors, s: roots(squares(values)), s2 };
}

/**
 * The same for a symmetric matrix C (only its lower triangle is read), without forming C Cᵀ = C²:
 * the left singular vectors of C are its eigenvectors ordered by |λ|, and s = |λ|. Every s is then
 * accurate to ~ε·‖C‖ instead of ~√ε·‖C‖ for the small ones, at half the cost (no product). Use it when
 * the matrix fed to the SVD is itself symmetric, e.g. a covariance (the t = 0 design of B, or the
 * DualGPM SVDs of C); Ĉ = C − M C is not symmetric and needs leftSingular.
 */
export function leftSingularSymmetric(c: Mat, select?: ColumnSelector): LeftSingular {
  const m = c.rows;
  let s = new Float64Array(0);
  let s2 = new Float64Array(0);
  const byMagnitude = (values: Float64Array): number[] => {
    const order = Array.from({ length: values.length }, (_, i) => i);
    order.sort((a, b) => Math.abs(values[b]) - Math.abs(values[a]) || a - b);
    s = Float64Array.from(order, (i) => Math.abs(values[i]));
    s2 = Float64Array.from(order, (i) => values[i] * values[i]);
    if (!select) return order;
    const positions = range(select(s2), values.length);
    return positions.map((p) => order[p]);
  };
  if (!select) {
    const { values, vectors } = eighDescending(c);
    const order = byMagnitude(values);
    const u = new Float64Array(m * m);
    for (let r = 0; r < m; r++) {
      const o = r * m;
      for (let j = 0; j < m; j++) u[o + j] = vectors.data[o + order[j]];
    }
    return { u: mat(m, m, u), s, s2 };
  }
  const { vectors } = eighPicked(c, byMagnitude);
  return { u: vectors, s, s2 };
}

/** The positions [start, end) as a list, after checking them against m. */
function range([start, end]: readonly [number, number], m: number): number[] {
  if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= m)) {
    throw new RangeError(`ColumnSelector: [${start}, ${end}) is not a column range of 0..${m}`);
  }
  return Array.from({ length: end - start }, (_, i) => start + i);
}

/** Eigenvalues of X Xᵀ clipped at 0: the squared singular values. */
function squares(values: Float64Array): Float64Array {
  return values.map((l) => Math.max(l, 0));
}

function roots(s2: Float64Array): Float64Array {
  return s2.map(Math.sqrt);
}

function fromEigen(values: Float64Array, vectors: Mat): LeftSingular {
  const s2 = squares(values);
  return { u: vectors, s: roots(s2), s2 };
}
