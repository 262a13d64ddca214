/**
 * Weight preparation on the host, in plain JS on typed arrays: transposes, per-head blocks, the pieces of
 * the finished-adapter fold. Doing it here instead of on the backend keeps setup from allocating (and, on
 * wasm, growing the heap for) temporary tensors, and lets the base k/v weights stay host arrays.
 */

/** Row-major [rows, cols] → its transpose [cols, rows], in cache-sized tiles (10× faster than row by row). */
export function transposeHost(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  const T = 16;
  for (let i0 = 0; i0 < rows; i0 += T) {
    const i1 = Math.min(i0 + T, rows);
    for (let j0 = 0; j0 < cols; j0 += T) {
      const j1 = Math.min(j0 + T, cols);
      for (let j = j0; j < j1; j++) {
        const o = j * rows;
        for (let i = i0; i < i1; i++) out[o + i] = a[i * cols + j];
      }
    }
  }
  return out;
}

/** Columns [c0, c0 + n) of a row-major [rows, cols] matrix, as a new [rows, n] matrix. */
export function columnBlock(
  a: Float32Array,
  rows: number,
  cols: number,
  c0: number,
  n: number,
): Float32Array {
  const out = new Float32Array(rows * n);
  for (let i = 0; i < rows; i++) out.set(a.subarray(i * cols + c0, i * cols + c0 + n), i * n);
  return out;
}

/** One finished adapter term A [D, r] · B [r, D]. */
export interface AdapterTerm {
  readonly rank: number;
  readonly A: Float32Array;
  readonly B: Float32Array;
}

/**
 * The terms side by side, A_cat = [A_1 … A_S] [D, R] and B_cat = [B_1; …; B_S] [R, D] (R = Σ r_s), so that
 * Σ_s A_s B_s is one matrix product.
 */
export function concatTerms(
  terms: readonly AdapterTerm[],
  D: number,
): { A: Float32Array; B: Float32Array; R: number } {
  const R = terms.reduce((n, t) => n + t.rank, 0);
  const A = new Float32Array(D * R);
  const B = new Float32Array(R * D);
  let col = 0;
  for (const t of terms) {
    for (let i = 0; i < D; i++) A.set(t.A.subarray(i * t.rank, (i + 1) * t.rank), i * R + col);
    B.set(t.B, col * D);
    col += t.rank;
  }
  return { A, B, R };
}

/** base + delta element-wise (the sum taken in float64, rounded once). */
export function addHost(base: Float32Array, delta: Float32Array): Float32Array {
  const out = new Float32Array(base.length);
  for (let i = 0; i < base.length; i++) out[i] = base[i] + delta[i];
  return out;
}
