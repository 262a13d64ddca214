/**
 * Householder reduction of a symmetric matrix to tridiagonal form, A = Q T Qᵀ (LAPACK dsytd2 with
 * uplo = "U", then dorgtr), on row-major typed arrays.
 *
 * Why the "upper" variant: the upper triangle of a column-major matrix is the lower triangle of a
 * row-major one, so every vector this algorithm touches (a column above the diagonal in LAPACK's
 * terms) is a contiguous row prefix here, and every trailing update walks contiguous row prefixes.
 * Only the lower triangle of the input is ever read.
 *
 * Performance notes (V8 in Node 20): the inner loops are bound by instruction count, not memory, and
 * V8 re-checks each typed array (map, length, data pointer) on every loop iteration. So the work
 * vectors live in the same Float64Array as the matrix (addressed by offset), several rows are processed
 * per pass to reuse each vector load, and consecutive steps are fused into one pass where possible.
 */

import { norm2 } from "./matrix.js";
import { ROTATION_WORKSPACE } from "./tridiagonal-eig.js";

export interface Tridiagonal {
  /** Diagonal of T, length n. */
  readonly d: Float64Array;
  /** Off-diagonal of T: e[i] = T[i, i+1], length max(n − 1, 0). */
  readonly e: Float64Array;
  /**
   * Q (n×n row-major, orthogonal, A = Q T Qᵀ) followed by ROTATION_WORKSPACE(n) entries of workspace,
   * the layout tridiagonalEigen expects for rotating Q in place into the eigenvectors.
   */
  readonly q: Float64Array;
}

/**
 * Reduce the symmetric n×n matrix whose lower triangle is in `a` (row-major, length n²) to tridiagonal
 * form. `a` is not modified.
 */
export function tridiagonalize(a: Float64Array, n: number): Tridiagonal {
  const d = new Float64Array(n);
  const e = new Float64Array(Math.max(n - 1, 0));
  if (n === 0) return { d, e, q: new Float64Array(0) };
  // Working copy of the lower triangle plus four work vectors. After the reduction, row i+1 holds the
  // Householder vector of step i in its first i entries (the implicit unit entry sits at column i).
  const w = new Float64Array(n * n + 4 * n);
  for (let i = 0; i < n; i++) {
    const r = i * n;
    for (let j = 0; j <= i; j++) w[r + j] = a[r + j];
  }
  const tau = new Float64Array(Math.max(n - 1, 0));
  reduce(w, n, d, e, tau);
  const q = formQ(w, n, tau);
  return { d, e, q };
}

/**
 * Step i (from n−2 down to 0) annihilates A[0:i−1, i+1] with a reflector H(i) = I − τ v vᵀ,
 * v[i] = 1, v[i+1:] = 0, and applies it to the leading (i+1)×(i+1) block: B ← H B H = B − v yᵀ − y vᵀ
 * with y = τBv − (τ²/2)(vᵀBv) v.
 *
 * The rank-2 update of step i and the symmetric mat-vec of step i−1 share one pass over the block:
 * the row that defines step i−1's reflector is the block's last row, so that row is updated first,
 * the next reflector built from it, and then the other rows are streamed once, each updated and
 * immediately used in the next mat-vec.
 */
function reduce(w: Float64Array, n: number, d: Float64Array, e: Float64Array, tau: Float64Array): void {
  if (n === 1) {
    d[0] = w[0];
    return;
  }
  // Offsets of the work vectors in w: the current step's v and y, the next step's (swapped per step).
  let V = n * n;
  let Y = V + n;
  let VN = Y + n;
  let YN = VN + n;
  // Step n−2: its reflector comes from the last row; its mat-vec is a pass of its own.
  let i = n - 2;
  let t = makeReflector(w, (i + 1) * n, i, V);
  tau[i] = t;
  e[i] = w[(i + 1) * n + i];
  d[i + 1] = w[(i + 1) * n + i + 1];
  if (t !== 0) {
    w.fill(0, Y, Y + i + 1);
    symvAdd(w, n, i + 1, V, Y);
    for (let c = 0; c <= i; c++) w[Y + c] *= t;
  }
  for (; i >= 0; i--) {
    const ti = t;
    const m = i + 1; // block size of step i
    if (ti !== 0) {
      // y ← τBv − (τ/2)(yᵀv) v.
      let yv = 0;
      for (let c = 0; c < m; c++) yv += w[Y + c] * w[V + c];
      const alpha = -0.5 * ti * yv;
      for (let c = 0; c < m; c++) w[Y + c] += alpha * w[V + c];
    }
    if (i === 0) {
      if (ti !== 0) w[0] -= 2 * w[V] * w[Y];
      d[0] = w[0];
      break;
    }
    // Update the block's last row (row i), then build step i−1's reflector from it.
    const ri = i * n;
    if (ti !== 0) {
      const vi = w[V + i];
      const yi = w[Y + i];
      for (let c = 0; c <= i; c++) w[ri + c] -= vi * w[Y + c] + yi * w[V + c];
    }
    const tn = makeReflector(w, ri, i - 1, VN);
    tau[i - 1] = tn;
    e[i - 1] = w[ri + i - 1];
    d[i] = w[ri + i];
    // Rows 0..i−1: finish step i's update and accumulate step i−1's mat-vec over block 0..i−1.
    const mn = i;
    w.fill(0, YN, YN + mn);
    if (ti !== 0) updateAndSymv(w, n, mn, V, Y, VN, YN);
    else if (tn !== 0) symvAdd(w, n, mn, VN, YN);
    for (let c = 0; c < mn; c++) w[YN + c] *= tn;
    [V, VN] = [VN, V];
    [Y, YN] = [YN, Y];
    t = tn;
  }
}

/**
 * For the symmetric block B = w[0:m, 0:m] (lower triangle): B ← B − v yᵀ − y vᵀ, then yn += B vn with
 * the updated B. v, y, vn, yn are at offsets V, Y, VN, YN of w. Rows go in pairs so each load of the
 * four vectors serves two rows.
 */
function updateAndSymv(
  w: Float64Array,
  n: number,
  m: number,
  V: number,
  Y: number,
  VN: number,
  YN: number,
): void {
  let r = 0;
  for (; r + 1 < m; r += 2) {
    const o0 = r * n;
    const o1 = o0 + n;
    const v0 = w[V + r];
    const y0 = w[Y + r];
    const u0 = w[VN + r];
    const v1 = w[V + r + 1];
    const y1 = w[Y + r + 1];
    const u1 = w[VN + r + 1];
    let s0 = 0;
    let s1 = 0;
    for (let c = 0; c < r; c++) {
      const yc = w[Y + c];
      const vc = w[V + c];
      const uc = w[VN + c];
      const x0 = w[o0 + c] - (v0 * yc + y0 * vc);
      const x1 = w[o1 + c] - (v1 * yc + y1 * vc);
      w[o0 + c] = x0;
      w[o1 + c] = x1;
      s0 += x0 * uc;
      s1 += x1 * uc;
      w[YN + c] += x0 * u0 + x1 * u1;
    }
    // The corner: (r, r), (r+1, r), (r+1, r+1).
    const d0 = w[o0 + r] - 2 * v0 * y0;
    const x1 = w[o1 + r] - (v1 * y0 + y1 * v0);
    const d1 = w[o1 + r + 1] - 2 * v1 * y1;
    w[o0 + r] = d0;
    w[o1 + r] = x1;
    w[o1 + r + 1] = d1;
    s1 += x1 * u0;
    w[YN + r] += s0 + d0 * u0 + x1 * u1;
    w[YN + r + 1] += s1 + d1 * u1;
  }
  if (r < m) {
    const o0 = r * n;
    const v0 = w[V + r];
    const y0 = w[Y + r];
    const u0 = w[VN + r];
    let s0 = 0;
    for (let c = 0; c < r; c++) {
      const x0 = w[o0 + c] - (v0 * w[Y + c] + y0 * w[V + c]);
      w[o0 + c] = x0;
      s0 += x0 * w[VN + c];
      w[YN + c] += x0 * u0;
    }
    const d0 = w[o0 + r] - 2 * v0 * y0;
    w[o0 + r] = d0;
    w[YN + r] += s0 + d0 * u0;
  }
}

/** yn += B vn for the symmetric block B = w[0:m, 0:m] (lower triangle); vn, yn at offsets VN, YN. */
function symvAdd(w: Float64Array, n: number, m: number, VN: number, YN: number): void {
  for (let r = 0; r < m; r++) {
    const o = r * n;
    const u = w[VN + r];
    let s = 0;
    for (let c = 0; c < r; c++) {
      const x = w[o + c];
      s += x * w[VN + c];
      w[YN + c] += x * u;
    }
    w[YN + r] += s + w[o + r] * u;
  }
}

/**
 * LAPACK dlarfg on the vector w[off : off+k+1], whose last entry is α: find τ and v (v[k] = 1) with
 * (I − τ v vᵀ) x = β e_k. Writes β to w[off+k], v[0:k] to w[off : off+k] and all of v to w[V : V+k+1].
 * Returns τ (0 when x is already a multiple of e_k).
 */
function makeReflector(w: Float64Array, off: number, k: number, V: number): number {
  const alpha = w[off + k];
  const xnorm = norm2(w, off, off + k);
  w[V + k] = 1;
  if (xnorm === 0) {
    w.fill(0, V, V + k);
    return 0;
  }
  const beta = -Math.sign(alpha || 1) * Math.hypot(alpha, xnorm);
  const t = (beta - alpha) / beta;
  const inv = 1 / (alpha - beta);
  for (let c = 0; c < k; c++) {
    const x = w[off + c] * inv;
    w[off + c] = x;
    w[V + c] = x;
  }
  w[off + k] = beta;
  return t;
}

/**
 * Q = H(n−2) ⋯ H(0), accumulated as H(k)(⋯(H(0) I)). H(k) touches indices 0..k only and the
 * partial product is block-diagonal with an identity below row k, so step k updates the leading
 * (k+1)×(k+1) block. As in the reduction, the update of step k and the vᵀM product of step k+1 share
 * one pass. The two product vectors live in q's 2n-entry tail.
 */
function formQ(w: Float64Array, n: number, tau: Float64Array): Float64Array {
  const q = new Float64Array(n * n + Math.max(ROTATION_WORKSPACE(n), 2 * n));
  for (let i = 0; i < n; i++) q[i * n + i] = 1;
  if (n < 2) return q;
  const v = new Float64Array(n);
  const vNext = new Float64Array(n);
  let Z = n * n; // vᵀM of the current step, over its block
  let ZN = Z + n; // the same for the next step
  loadVector(w, n, 0, v);
  // vᵀ I over block 0..0 is just v[0] = 1.
  q[Z] = 1;
  for (let k = 0; k <= n - 2; k++) {
    const m = k + 1;
    if (k < n - 2) loadVector(w, n, k + 1, vNext);
    else vNext.fill(0);
    // Row k+1 of the product so far is e_{k+1}, so step k+1's vᵀM starts as e_{k+1}.
    q.fill(0, ZN, ZN + m);
    q[ZN + m] = 1;
    reflectRows(q, n, m, tau[k], v, Z, vNext, ZN);
    v.set(vNext.subarray(0, m + 1));
    [Z, ZN] = [ZN, Z];
  }
  return q;
}

/**
 * On the leading m×m block of q: row r ← row r − τ v[r] z, then zn += Σ_r vn[r]·(new row r), with z
 * and zn at offsets Z and ZN of q. Four rows per pass, so each load of z and zn serves four rows.
 */
function reflectRows(
  q: Float64Array,
  n: number,
  m: number,
  t: number,
  v: Float64Array,
  Z: number,
  vn: Float64Array,
  ZN: number,
): void {
  let r = 0;
  for (; r + 3 < m; r += 4) {
    const o0 = r * n;
    const o1 = o0 + n;
    const o2 = o1 + n;
    const o3 = o2 + n;
    const f0 = t * v[r];
    const f1 = t * v[r + 1];
    const f2 = t * v[r + 2];
    const f3 = t * v[r + 3];
    const g0 = vn[r];
    const g1 = vn[r + 1];
    const g2 = vn[r + 2];
    const g3 = vn[r + 3];
    for (let c = 0; c < m; c++) {
      const zc = q[Z + c];
      const x0 = q[o0 + c] - f0 * zc;
      const x1 = q[o1 + c] - f1 * zc;
      const x2 = q[o2 + c] - f2 * zc;
      const x3 = q[o3 + c] - f3 * zc;
      q[o0 + c] = x0;
      q[o1 + c] = x1;
      q[o2 + c] = x2;
      q[o3 + c] = x3;
      q[ZN + c] += g0 * x0 + g1 * x1 + g2 * x2 + g3 * x3;
    }
  }
  for (; r < m; r++) {
    const o0 = r * n;
    const f0 = t * v[r];
    const g0 = vn[r];
    for (let c = 0; c < m; c++) {
      const x0 = q[o0 + c] - f0 * q[Z + c];
      q[o0 + c] = x0;
      q[ZN + c] += g0 * x0;
    }
  }
}

/** The reflector of step k: stored in row k+1, columns 0..k−1, with the implicit 1 at column k. */
function loadVector(w: Float64Array, n: number, k: number, v: Float64Array): void {
  const r = (k + 1) * n;
  for (let c = 0; c < k; c++) v[c] = w[r + c];
  v[k] = 1;
}
