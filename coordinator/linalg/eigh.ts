/**
 * Symmetric eigendecomposition in float64. With the native addon: LAPACK's dsyevd (divide and conquer;
 * as fast as dsyevr here and more robust on clustered spectra). Without it: Householder
 * tridiagonalisation and implicit QL (eigh-ts.ts). Both are backward stable: ‖A − VΛVᵀ‖ and ‖VᵀV − I‖
 * are a small multiple of n·ε·‖A‖.
 */

import type { NativeAddon } from "../../native/index.js";
import { eighTs } from "./eigh-ts.js";
import { lapack, withLapackThreads } from "./lapack.js";
import { identity, type Mat, mat } from "./matrix.js";

export interface Eigh {
  /** Eigenvalues, descending. */
  readonly values: Float64Array;
  /** n×n, orthonormal; column j is the eigenvector of values[j]. */
  readonly vectors: Mat;
}

/**
 * Symmetric eigendecomposition of a (must be symmetric; only the lower triangle is read). Eigenvalues
 * DESCENDING, eigenvectors as the columns of `vectors` (n×n), orthonormal. Eigenvectors of repeated
 * eigenvalues are some orthonormal basis of their eigenspace; signs are arbitrary (but deterministic).
 */
export function eighDescending(a: Mat): Eigh {
  return eigh(a, lapack());
}

/** eighDescending through the TypeScript implementation, whatever is installed (tests, benchmarks). */
export function eighDescendingTs(a: Mat): Eigh {
  return eigh(a, undefined);
}

/**
 * The lower triangle of `a` checked (square, finite) and scaled by an exact power of two when its
 * magnitude is extreme: squares and products in the reductions then neither overflow nor underflow.
 * `zero` when a = 0. `unscale` multiplies an eigenvalue back.
 */
export function prepareSymmetric(
  a: Mat,
  fn: string,
):
  | { readonly zero: true }
  | { readonly zero: false; readonly src: Float64Array; unscale(v: number): number } {
  const n = a.rows;
  if (a.cols !== n) throw new RangeError(`${fn}: matrix must be square, got ${a.rows}×${a.cols}`);

  let amax = 0;
  for (let i = 0; i < n; i++) {
    const r = i * n;
    for (let j = 0; j <= i; j++) {
      const x = Math.abs(a.data[r + j]);
      // `!(x <= amax)` also catches NaN, which would otherwise spin the QL iteration to its limit.
      if (!(x <= amax)) {
        if (!Number.isFinite(x)) throw new RangeError(`${fn}: non-finite entry at (${i}, ${j})`);
        amax = x;
      }
    }
  }
  if (amax === 0) return { zero: true };

  // A power-of-two scale is exact and keeps squares and products in the reduction far from
  // over/underflow for matrices with extreme magnitudes. It is applied as two factors because 2^−e2
  // alone overflows for subnormal input.
  const e2 = Math.round(Math.log2(amax));
  const needsScale = e2 > 300 || e2 < -300;
  let src = a.data;
  if (needsScale) {
    const f1 = 2 ** -Math.trunc(e2 / 2);
    const f2 = 2 ** -(e2 - Math.trunc(e2 / 2));
    src = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      const r = i * n;
      for (let j = 0; j <= i; j++) src[r + j] = a.data[r + j] * f1 * f2;
    }
  }

  const u1 = needsScale ? 2 ** Math.trunc(e2 / 2) : 1;
  const u2 = needsScale ? 2 ** (e2 - Math.trunc(e2 / 2)) : 1;
  return { zero: false, src, unscale: (v) => v * u1 * u2 };
}

function eigh(a: Mat, addon: NativeAddon | undefined): Eigh {
  const n = a.rows;
  if (a.cols === n && n === 0) return { values: new Float64Array(0), vectors: mat(0, 0) };
  const prep = prepareSymmetric(a, "eighDescending");
  if (prep.zero) return { values: new Float64Array(n), vectors: identity(n) };
  const { values, vectors } = addon ? eighLapack(addon, prep.src, n) : eighTs(prep.src, n);
  for (let j = 0; j < n; j++) values[j] = prep.unscale(values[j]);
  return { values, vectors: mat(n, n, vectors) };
}

function eighLapack(addon: NativeAddon, src: Float64Array, n: number) {
  return withLapackThreads(addon, () => addon.dsyevd(src, n));
}
