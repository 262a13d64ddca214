/**
 * Dense float64 matrices, row-major, and the few operations the coordinator needs. Products of more than
 * NATIVE_MIN_MACS multiply-adds go to BLAS (dgemm/dsyrk) when the native addon is built: ~20 ms instead
 * of ~260 ms for 768³.
 */
import { transpose2d } from "../../common/permute.js";
import { lapack, withLapackThreads } from "./lapack.js";

/** Dense float64 matrix, row-major: element (i, j) is data[i * cols + j]. */
export interface Mat {
  readonly rows: number;
  readonly cols: number;
  readonly data: Float64Array;
}

/** A rows×cols matrix over `data` (not copied), or a new zero matrix. */
export function mat(rows: number, cols: number, data?: Float64Array): Mat {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 0 || cols < 0) {
    throw new RangeError(`mat: bad shape ${rows}×${cols}`);
  }
  if (data === undefined) return { rows, cols, data: new Float64Array(rows * cols) };
  if (data.length !== rows * cols) {
    throw new RangeError(`mat: ${rows}×${cols} needs ${rows * cols} elements, got ${data.length}`);
  }
  return { rows, cols, data };
}

export function identity(n: number): Mat {
  const out = mat(n, n);
  for (let i = 0; i < n; i++) out.data[i * n + i] = 1;
  return out;
}

export function transpose(a: Mat): Mat {
  return mat(a.cols, a.rows, transpose2d(a.data, a.rows, a.cols));
}

/** Below this many multiply-adds the call overhead outweighs what BLAS saves. */
const NATIVE_MIN_MACS = 32 * 1024;

/** op(a) · op(b) through BLAS when worth it; undefined for the TypeScript loops. */
function blasProduct(a: Mat, b: Mat, transA: boolean, transB: boolean): Mat | undefined {
  const m = transA ? a.cols : a.rows;
  const k = transA ? a.rows : a.cols;
  const n = transB ? b.rows : b.cols;
  if (m * n * k < NATIVE_MIN_MACS) return undefined;
  const addon = lapack();
  if (!addon) return undefined;
  const c = new Float64Array(m * n);
  withLapackThreads(addon, () => addon.dgemm(a.data, b.data, c, 1, 1, m, n, k, transA, transB));
  return mat(m, n, c);
}

/** a · b. */
export function matmul(a: Mat, b: Mat): Mat {
  if (a.cols !== b.rows) throw new RangeError(`matmul: ${a.rows}×${a.cols} · ${b.rows}×${b.cols}`);
  const fast = blasProduct(a, b, false, false);
  if (fast) return fast;
  const m = a.rows;
  const k = a.cols;
  const n = b.cols;
  const A = a.data;
  const B = b.data;
  const C = new Float64Array(m * n);
  // i-k-j order: the inner loop runs along contiguous rows of B and C. Four rows of B per pass cut the
  // loads and stores of the C row by four; the k/j blocks keep the touched part of B in cache while all
  // rows of A stream past it.
  const KB = 128;
  const JB = 512;
  for (let j0 = 0; j0 < n; j0 += JB) {
    const j1 = Math.min(j0 + JB, n);
    for (let k0 = 0; k0 < k; k0 += KB) {
      const k1 = Math.min(k0 + KB, k);
      for (let i = 0; i < m; i++) {
        const ai = i * k;
        const ci = i * n;
        let p = k0;
        for (; p + 3 < k1; p += 4) {
          const a0 = A[ai + p];
          const a1 = A[ai + p + 1];
          const a2 = A[ai + p + 2];
          const a3 = A[ai + p + 3];
          if (a0 === 0 && a1 === 0 && a2 === 0 && a3 === 0) continue;
          const b0 = p * n;
          const b1 = b0 + n;
          const b2 = b1 + n;
          const b3 = b2 + n;
          for (let j = j0; j < j1; j++) {
            C[ci + j] += a0 * B[b0 + j] + a1 * B[b1 + j] + a2 * B[b2 + j] + a3 * B[b3 + j];
          }
        }
        for (; p < k1; p++) {
          const a0 = A[ai + p];
          if (a0 === 0) continue;
          const b0 = p * n;
          for (let j = j0; j < j1; j++) C[ci + j] += a0 * B[b0 + j];
        }
      }
    }
  }
  return mat(m, n, C);
}

/** aᵀ · b. */
export function matmulAtB(a: Mat, b: Mat): Mat {
  if (a.rows !== b.rows) throw new RangeError(`matmulAtB: (${a.rows}×${a.cols})ᵀ · ${b.rows}×${b.cols}`);
  const fast = blasProduct(a, b, true, false);
  if (fast) return fast;
  // Transposing first (O(mk)) lets the O(mkn) product run in the cache-friendly row order.
  return matmul(transpose(a), b);
}

/** a · bᵀ. Every entry is a dot product of two contiguous rows, so no transpose is needed. */
export function matmulABt(a: Mat, b: Mat): Mat {
  if (a.cols !== b.cols) throw new RangeError(`matmulABt: ${a.rows}×${a.cols} · (${b.rows}×${b.cols})ᵀ`);
  const m = a.rows;
  const n = b.rows;
  const k = a.cols;
  const symmetric = a === b || (a.data === b.data && a.rows === b.rows);
  const addon = m * n * k >= NATIVE_MIN_MACS ? lapack() : undefined;
  if (addon && symmetric) {
    // dsyrk fills one triangle and mirrors it: the result is exactly symmetric, as below.
    const g = new Float64Array(m * m);
    withLapackThreads(addon, () => addon.dsyrk(a.data, g, m, k));
    return mat(m, m, g);
  }
  const fast = addon ? blasProduct(a, b, false, true) : undefined;
  if (fast) return fast;
  const C = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    // a aᵀ is symmetric: compute the lower triangle and mirror it.
    const jEnd = symmetric ? i + 1 : n;
    dotRows(a.data, i * k, b.data, k, 0, jEnd, C, i * n);
  }
  if (symmetric) {
    for (let i = 0; i < m; i++) for (let j = 0; j < i; j++) C[j * n + i] = C[i * n + j];
  }
  return mat(m, n, C);
}

/** out[o + j] = a[ai : ai+k] · b[j*k : j*k+k] for j in [j0, j1). */
function dotRows(
  A: Float64Array,
  ai: number,
  B: Float64Array,
  k: number,
  j0: number,
  j1: number,
  out: Float64Array,
  o: number,
): void {
  let j = j0;
  // Four rows of b at once: four independent accumulation chains and one load of a per four products.
  for (; j + 3 < j1; j += 4) {
    const b0 = j * k;
    const b1 = b0 + k;
    const b2 = b1 + k;
    const b3 = b2 + k;
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    for (let p = 0; p < k; p++) {
      const x = A[ai + p];
      s0 += x * B[b0 + p];
      s1 += x * B[b1 + p];
      s2 += x * B[b2 + p];
      s3 += x * B[b3 + p];
    }
    out[o + j] = s0;
    out[o + j + 1] = s1;
    out[o + j + 2] = s2;
    out[o + j + 3] = s3;
  }
  for (; j < j1; j++) {
    const b0 = j * k;
    let s = 0;
    for (let p = 0; p < k; p++) s += A[ai + p] * B[b0 + p];
    out[o + j] = s;
  }
}

/** a[:, start:end] (copied). */
export function columns(a: Mat, start: number, end: number): Mat {
  if (!(0 <= start && start <= end && end <= a.cols)) {
    throw new RangeError(`columns: [${start}, ${end}) out of 0..${a.cols}`);
  }
  const w = end - start;
  const out = new Float64Array(a.rows * w);
  for (let i = 0; i < a.rows; i++) {
    out.set(a.data.subarray(i * a.cols + start, i * a.cols + end), i * w);
  }
  return mat(a.rows, w, out);
}

/** [a b] side by side. */
export function hstack(a: Mat, b: Mat): Mat {
  if (a.rows !== b.rows) throw new RangeError(`hstack: ${a.rows} rows vs ${b.rows} rows`);
  const w = a.cols + b.cols;
  const out = new Float64Array(a.rows * w);
  for (let i = 0; i < a.rows; i++) {
    out.set(a.data.subarray(i * a.cols, (i + 1) * a.cols), i * w);
    out.set(b.data.subarray(i * b.cols, (i + 1) * b.cols), i * w + a.cols);
  }
  return mat(a.rows, w, out);
}

export function sub(a: Mat, b: Mat): Mat {
  if (a.rows !== b.rows || a.cols !== b.cols) {
    throw new RangeError(`sub: ${a.rows}×${a.cols} − ${b.rows}×${b.cols}`);
  }
  const out = new Float64Array(a.data.length);
  for (let i = 0; i < out.length; i++) out[i] = a.data[i] - b.data[i];
  return mat(a.rows, a.cols, out);
}

export function scale(a: Mat, s: number): Mat {
  const out = new Float64Array(a.data.length);
  for (let i = 0; i < out.length; i++) out[i] = a.data[i] * s;
  return mat(a.rows, a.cols, out);
}

/** Frobenius norm, scaled so that huge or tiny entries neither overflow nor underflow. */
export function frobenius(a: Mat): number {
  return norm2(a.data, 0, a.data.length);
}

/** Euclidean norm of x[start:end]; falls back to a scaled sum when the plain one over/underflows. */
export function norm2(x: Float64Array, start: number, end: number): number {
  let ss = 0;
  for (let i = start; i < end; i++) ss += x[i] * x[i];
  // Plain sum is exact enough unless a square overflowed or the sum is down among denormals.
  if (ss < Number.POSITIVE_INFINITY && ss > 1e-280) return Math.sqrt(ss);
  let big = 0;
  for (let i = start; i < end; i++) {
    const v = Math.abs(x[i]);
    if (v > big) big = v;
  }
  if (big === 0 || !Number.isFinite(big)) return big;
  ss = 0;
  for (let i = start; i < end; i++) {
    const v = x[i] / big;
    ss += v * v;
  }
  return big * Math.sqrt(ss);
}
