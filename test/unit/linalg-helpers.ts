/**
 * Test-side helpers for the linalg tests, written independently of coordinator/linalg so that the
 * expectations do not share code (or bugs) with what they check.
 */

import type { Mat } from "../../coordinator/linalg/matrix.js";

/** mulberry32: a tiny seeded PRNG, uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal samples (Box–Muller). */
export function gaussian(rng: () => number): () => number {
  return () => {
    const u = 1 - rng();
    const v = rng();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
}

export function make(rows: number, cols: number, f: (i: number, j: number) => number): Mat {
  const data = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) data[i * cols + j] = f(i, j);
  return { rows, cols, data };
}

export const at = (a: Mat, i: number, j: number): number => a.data[i * a.cols + j];

/** Textbook triple loop (i-k-j order, no blocking, no unrolling): the reference for products. */
export function naiveMul(a: Mat, b: Mat): Mat {
  const out = new Float64Array(a.rows * b.cols);
  for (let i = 0; i < a.rows; i++) {
    for (let k = 0; k < a.cols; k++) {
      const x = a.data[i * a.cols + k];
      for (let j = 0; j < b.cols; j++) out[i * b.cols + j] += x * b.data[k * b.cols + j];
    }
  }
  return { rows: a.rows, cols: b.cols, data: out };
}

export const naiveT = (a: Mat): Mat => make(a.cols, a.rows, (i, j) => at(a, j, i));

export function fro(a: Mat): number {
  let s = 0;
  for (const x of a.data) s += x * x;
  return Math.sqrt(s);
}

export function diff(a: Mat, b: Mat): number {
  return fro(make(a.rows, a.cols, (i, j) => at(a, i, j) - at(b, i, j)));
}

export function randomMat(rows: number, cols: number, rng: () => number): Mat {
  const g = gaussian(rng);
  return make(rows, cols, () => g());
}

export function randomSymmetric(n: number, rng: () => number): Mat {
  const g = randomMat(n, n, rng);
  return make(n, n, (i, j) => (at(g, i, j) + at(g, j, i)) / 2);
}

/** n×k with orthonormal columns: modified Gram–Schmidt, twice, on Gaussian columns. */
export function randomOrthonormal(n: number, k: number, rng: () => number): Mat {
  const q = randomMat(n, k, rng);
  for (let pass = 0; pass < 2; pass++) {
    for (let j = 0; j < k; j++) {
      for (let p = 0; p < j; p++) {
        let d = 0;
        for (let i = 0; i < n; i++) d += q.data[i * k + p] * q.data[i * k + j];
        for (let i = 0; i < n; i++) q.data[i * k + j] -= d * q.data[i * k + p];
      }
      let nn = 0;
      for (let i = 0; i < n; i++) nn += q.data[i * k + j] ** 2;
      nn = Math.sqrt(nn);
      for (let i = 0; i < n; i++) q.data[i * k + j] /= nn;
    }
  }
  return q;
}

/** Q diag(values) Qᵀ for a random orthogonal Q, symmetrised exactly. */
export function withSpectrum(values: readonly number[], rng: () => number): Mat {
  const n = values.length;
  const q = randomOrthonormal(n, n, rng);
  const qd = make(n, n, (i, j) => at(q, i, j) * values[j]);
  const a = naiveMul(qd, naiveT(q));
  return make(n, n, (i, j) => (i >= j ? at(a, i, j) : at(a, j, i)));
}

/** Columns [start, end) of a. */
export const cols = (a: Mat, start: number, end: number): Mat =>
  make(a.rows, end - start, (i, j) => at(a, i, start + j));

/** The orthogonal projector U Uᵀ onto the span of U's (orthonormal) columns. */
export const projector = (u: Mat): Mat => naiveMul(u, naiveT(u));

/** ‖A − V diag(λ) Vᵀ‖_F / ‖A‖_F (‖A − …‖ when A = 0). */
export function reconstructionError(a: Mat, values: Float64Array, v: Mat): number {
  const vl = make(v.rows, v.cols, (i, j) => at(v, i, j) * values[j]);
  const r = diff(a, naiveMul(vl, naiveT(v)));
  const na = fro(a);
  return na === 0 ? r : r / na;
}

/** ‖VᵀV − I‖_F. */
export function orthogonalityError(v: Mat): number {
  const g = naiveMul(naiveT(v), v);
  return fro(make(g.rows, g.cols, (i, j) => at(g, i, j) - (i === j ? 1 : 0)));
}

/** max_j ‖A v_j − λ_j v_j‖ / ‖A‖_F. */
export function residual(a: Mat, values: Float64Array, v: Mat): number {
  const av = naiveMul(a, v);
  const na = fro(a) || 1;
  let worst = 0;
  for (let j = 0; j < v.cols; j++) {
    let s = 0;
    for (let i = 0; i < v.rows; i++) s += (at(av, i, j) - values[j] * at(v, i, j)) ** 2;
    worst = Math.max(worst, Math.sqrt(s) / na);
  }
  return worst;
}

export function isDescending(x: Float64Array): boolean {
  for (let i = 1; i < x.length; i++) if (!(x[i] <= x[i - 1])) return false;
  return true;
}
