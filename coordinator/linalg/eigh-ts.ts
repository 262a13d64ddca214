/**
 * The TypeScript fallback of eighDescending (used when the native addon is missing or
 * INFLORA_LINALG=ts): Householder reduction to tridiagonal form, then the implicit QL iteration with
 * Wilkinson shifts, the textbook pair tred2/tql2 of EISPACK (Numerical Recipes §11.2–11.3), in float64.
 * It is several times slower than LAPACK (bench/linalg.ts) and meant to be read, not tuned.
 *
 * Layout: the algorithms are written for Q with the eigenvectors as columns and walk down columns.
 * Here the matrix is kept transposed (`qt`, row-major, eigenvector j in row j), so every inner loop runs
 * along a contiguous row; A is symmetric, so its transpose is itself and the reduction starts from A.
 */

export interface Tridiagonal {
  /** Diagonal of T, length n. */
  readonly d: Float64Array;
  /** Sub-diagonal of T: e[i] = T[i, i−1] for i ≥ 1, e[0] = 0; length n. */
  readonly e: Float64Array;
  /** Qᵀ (n×n row-major) with A = Q T Qᵀ: row i of qt is column i of Q. */
  readonly qt: Float64Array;
}

/**
 * Householder tridiagonalisation (tred2) of the symmetric n×n matrix whose lower triangle is in `a`
 * (row-major; the upper triangle is not read). `a` is not modified.
 */
export function tridiagonalize(a: Float64Array, n: number): Tridiagonal {
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  const w = new Float64Array(n * n);
  if (n === 0) return { d, e, qt: w };
  // w[j][k] plays tred2's V[k][j]; both triangles are filled from the lower one.
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      const x = a[i * n + j];
      w[i * n + j] = x;
      w[j * n + i] = x;
    }
  }
  for (let j = 0; j < n; j++) d[j] = w[j * n + n - 1];

  // Step i zeroes row i left of its sub-diagonal with a reflector H = I − u uᵀ/h built from d[0..i−1]
  // (row i of the current matrix); u is kept in row i of w and h in d[i] for the accumulation below.
  for (let i = n - 1; i > 0; i--) {
    let scale = 0;
    let h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]);
    if (scale === 0) {
      e[i] = d[i - 1];
      for (let j = 0; j < i; j++) {
        d[j] = w[j * n + i - 1];
        w[j * n + i] = 0;
        w[i * n + j] = 0;
      }
    } else {
      // The Householder vector u = x − (±‖x‖) e_{i−1}, scaled to avoid over/underflow in ‖x‖².
      for (let k = 0; k < i; k++) {
        d[k] /= scale;
        h += d[k] * d[k];
      }
      let f = d[i - 1];
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      // p = A u / h (in e); w holds one triangle of the leading i×i block: row j from its diagonal on.
      for (let j = 0; j < i; j++) {
        const wj = j * n;
        f = d[j];
        w[i * n + j] = f;
        g = e[j] + w[wj + j] * f;
        for (let k = j + 1; k < i; k++) {
          g += w[wj + k] * d[k];
          e[k] += w[wj + k] * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j] /= h;
        f += e[j] * d[j];
      }
      // q = p − K u with K = uᵀp / 2h, then A ← A − q uᵀ − u qᵀ.
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j] -= hh * d[j];
      for (let j = 0; j < i; j++) {
        const wj = j * n;
        f = d[j];
        g = e[j];
        for (let k = j; k < i; k++) w[wj + k] -= f * e[k] + g * d[k];
        d[j] = w[wj + i - 1];
        w[wj + i] = 0;
      }
    }
    d[i] = h;
  }

  // Accumulate Q = H(n−1) ⋯ H(1) in place of the reflectors, as Qᵀ.
  for (let i = 0; i < n - 1; i++) {
    const wi = i * n;
    const u = (i + 1) * n; // the reflector of step i+1: w[i+1][0..i]
    w[wi + n - 1] = w[wi + i];
    w[wi + i] = 1;
    const h = d[i + 1];
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = w[u + k] / h;
      for (let j = 0; j <= i; j++) {
        const wj = j * n;
        const g = dot(w, u, w, wj, i + 1);
        axpy(-g, d, 0, w, wj, i + 1);
      }
    }
    for (let k = 0; k <= i; k++) w[u + k] = 0;
  }
  for (let j = 0; j < n; j++) {
    d[j] = w[j * n + n - 1];
    w[j * n + n - 1] = 0;
  }
  w[n * n - 1] = 1;
  e[0] = 0;
  return { d, e, qt: w };
}

/** x[xo : xo+len] · y[yo : yo+len]. */
function dot(x: Float64Array, xo: number, y: Float64Array, yo: number, len: number): number {
  let s = 0;
  for (let k = 0; k < len; k++) s += x[xo + k] * y[yo + k];
  return s;
}

/** y[yo : yo+len] += a · x[xo : xo+len]. */
function axpy(a: number, x: Float64Array, xo: number, y: Float64Array, yo: number, len: number): void {
  for (let k = 0; k < len; k++) y[yo + k] += a * x[xo + k];
}

/** Sweeps allowed per eigenvalue before giving up (EISPACK's limit). */
const MAX_SWEEPS = 30;
const EPS = 2 ** -52;

/**
 * Implicit QL with shifts (tql2) on T = tridiag(e, d, e) from tridiagonalize: on return d holds the
 * eigenvalues (unsorted) and row j of `qt` the eigenvector of d[j] (the rotations of every sweep are
 * applied to the rows of qt, so Qᵀ in gives (Q·Z)ᵀ out). e is destroyed.
 */
export function tridiagonalQL(d: Float64Array, e: Float64Array, qt: Float64Array, n: number): void {
  if (n <= 1) return;
  for (let i = 1; i < n; i++) e[i - 1] = e[i];
  e[n - 1] = 0;

  // An off-diagonal entry below ε‖T‖ is negligible: tql2 compares with the norm of the part of T seen
  // so far, which is the same backward error but keeps sweeping on small eigenvalues that a
  // covariance has many of.
  let norm = 0;
  for (let i = 0; i < n; i++) norm = Math.max(norm, Math.abs(d[i]) + Math.abs(e[i]));
  const tol = EPS * norm;
  let shift = 0;
  for (let l = 0; l < n; l++) {
    // Until e[l] is negligible: T[l..m] is the unreduced block (e[m] is the first negligible entry).
    for (let sweeps = 1; ; sweeps++) {
      let m = l;
      while (m < n - 1 && Math.abs(e[m]) > tol) m++;
      if (m === l) break;
      if (sweeps > MAX_SWEEPS) {
        throw new Error(
          `eighDescending (TypeScript): no convergence after ${MAX_SWEEPS} QL sweeps (n = ${n})`,
        );
      }
      // Shift by the eigenvalue of the leading 2×2 block nearer to d[l].
      let g = d[l];
      let p = (d[l + 1] - g) / (2 * e[l]);
      let r = Math.hypot(p, 1);
      if (p < 0) r = -r;
      d[l] = e[l] / (p + r);
      d[l + 1] = e[l] * (p + r);
      const dl1 = d[l + 1];
      let h = g - d[l];
      for (let i = l + 2; i < n; i++) d[i] -= h;
      shift += h;

      // One implicit QL sweep from m−1 up to l, chasing the bulge with Givens rotations.
      p = d[m];
      let c = 1;
      let c2 = 1;
      let c3 = 1;
      const el1 = e[l + 1];
      let s = 0;
      let s2 = 0;
      for (let i = m - 1; i >= l; i--) {
        c3 = c2;
        c2 = c;
        s2 = s;
        g = c * e[i];
        h = c * p;
        r = Math.hypot(p, e[i]);
        e[i + 1] = s * r;
        s = e[i] / r;
        c = p / r;
        p = c * d[i] - s * g;
        d[i + 1] = h + s * (c * g + s * d[i]);
        rotateRows(qt, i * n, (i + 1) * n, n, c, s);
      }
      p = (-s * s2 * c3 * el1 * e[l]) / dl1;
      e[l] = s * p;
      d[l] = c * p;
    }
    d[l] += shift;
    e[l] = 0;
  }
}

/** Rows (x, y) of qt at offsets xo, yo ← (c·x − s·y, s·x + c·y). */
function rotateRows(qt: Float64Array, xo: number, yo: number, n: number, c: number, s: number): void {
  for (let k = 0; k < n; k++) {
    const x = qt[xo + k];
    const y = qt[yo + k];
    qt[yo + k] = s * x + c * y;
    qt[xo + k] = c * x - s * y;
  }
}

/** Eigenvalues descending and eigenvectors as the columns of an n×n row-major matrix. */
export function eighTs(src: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const { d, e, qt } = tridiagonalize(src, n);
  tridiagonalQL(d, e, qt, n);
  const order = Array.from({ length: n }, (_, i) => i);
  // Ties keep their original order, so the output does not depend on the sort implementation.
  order.sort((x, y) => d[y] - d[x] || x - y);
  const values = new Float64Array(n);
  const vectors = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    values[j] = d[order[j]];
    const row = order[j] * n;
    for (let r = 0; r < n; r++) vectors[r * n + j] = qt[row + r];
  }
  return { values, vectors };
}
