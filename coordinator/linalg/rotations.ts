/**
 * Sequences of plane rotations applied to the columns of a row-major matrix (LAPACK dlasr with
 * side = "R", pivot = "V").
 *
 * LAPACK applies one rotation at a time to a pair of columns. Here each row takes the whole sequence
 * in one pass instead: consecutive rotations share a column, so that column's value is carried in a
 * register and each element is loaded and stored once per sequence, with the row and the rotations
 * staying in L1. The carried value is a serial dependency, so six rows run side by side to give the
 * CPU independent chains (six keeps everything in the 16 SSE registers).
 *
 * The rotations live in the same Float64Array as the matrix, at offset `co` (c_j at co + 2j, s_j at
 * co + 2j + 1): V8 (Node 20) re-checks every typed array accessed in a loop on each iteration, so one
 * array instead of three makes the kernel measurably faster.
 */

/**
 * For j = last−1 down to first: columns (j, j+1) ← (s_j·x_{j+1} + c_j·x_j, c_j·x_{j+1} − s_j·x_j),
 * on rows 0..rows−1 of the matrix in `w` (row stride `ld`).
 */
export function rotateBackward(
  w: Float64Array,
  rows: number,
  ld: number,
  first: number,
  last: number,
  co: number,
): void {
  if (last <= first) return;
  let r = 0;
  for (; r + 5 < rows; r += 6) {
    const o0 = r * ld;
    const o1 = o0 + ld;
    const o2 = o1 + ld;
    const o3 = o2 + ld;
    const o4 = o3 + ld;
    const o5 = o4 + ld;
    let t0 = w[o0 + last];
    let t1 = w[o1 + last];
    let t2 = w[o2 + last];
    let t3 = w[o3 + last];
    let t4 = w[o4 + last];
    let t5 = w[o5 + last];
    for (let j = last - 1; j >= first; j--) {
      const c = w[co + 2 * j];
      const s = w[co + 2 * j + 1];
      const x0 = w[o0 + j];
      const x1 = w[o1 + j];
      const x2 = w[o2 + j];
      const x3 = w[o3 + j];
      const x4 = w[o4 + j];
      const x5 = w[o5 + j];
      w[o0 + j + 1] = c * t0 - s * x0;
      w[o1 + j + 1] = c * t1 - s * x1;
      w[o2 + j + 1] = c * t2 - s * x2;
      w[o3 + j + 1] = c * t3 - s * x3;
      w[o4 + j + 1] = c * t4 - s * x4;
      w[o5 + j + 1] = c * t5 - s * x5;
      t0 = s * t0 + c * x0;
      t1 = s * t1 + c * x1;
      t2 = s * t2 + c * x2;
      t3 = s * t3 + c * x3;
      t4 = s * t4 + c * x4;
      t5 = s * t5 + c * x5;
    }
    w[o0 + first] = t0;
    w[o1 + first] = t1;
    w[o2 + first] = t2;
    w[o3 + first] = t3;
    w[o4 + first] = t4;
    w[o5 + first] = t5;
  }
  for (; r < rows; r++) {
    const o = r * ld;
    let t = w[o + last];
    for (let j = last - 1; j >= first; j--) {
      const c = w[co + 2 * j];
      const s = w[co + 2 * j + 1];
      const x = w[o + j];
      w[o + j + 1] = c * t - s * x;
      t = s * t + c * x;
    }
    w[o + first] = t;
  }
}

/** As rotateBackward, but for j = first up to last−1 (LAPACK dlasr direct = "F"). */
export function rotateForward(
  w: Float64Array,
  rows: number,
  ld: number,
  first: number,
  last: number,
  co: number,
): void {
  if (last <= first) return;
  let r = 0;
  for (; r + 5 < rows; r += 6) {
    const o0 = r * ld;
    const o1 = o0 + ld;
    const o2 = o1 + ld;
    const o3 = o2 + ld;
    const o4 = o3 + ld;
    const o5 = o4 + ld;
    let t0 = w[o0 + first];
    let t1 = w[o1 + first];
    let t2 = w[o2 + first];
    let t3 = w[o3 + first];
    let t4 = w[o4 + first];
    let t5 = w[o5 + first];
    for (let j = first; j < last; j++) {
      const c = w[co + 2 * j];
      const s = w[co + 2 * j + 1];
      const x0 = w[o0 + j + 1];
      const x1 = w[o1 + j + 1];
      const x2 = w[o2 + j + 1];
      const x3 = w[o3 + j + 1];
      const x4 = w[o4 + j + 1];
      const x5 = w[o5 + j + 1];
      w[o0 + j] = s * x0 + c * t0;
      w[o1 + j] = s * x1 + c * t1;
      w[o2 + j] = s * x2 + c * t2;
      w[o3 + j] = s * x3 + c * t3;
      w[o4 + j] = s * x4 + c * t4;
      w[o5 + j] = s * x5 + c * t5;
      t0 = c * x0 - s * t0;
      t1 = c * x1 - s * t1;
      t2 = c * x2 - s * t2;
      t3 = c * x3 - s * t3;
      t4 = c * x4 - s * t4;
      t5 = c * x5 - s * t5;
    }
    w[o0 + last] = t0;
    w[o1 + last] = t1;
    w[o2 + last] = t2;
    w[o3 + last] = t3;
    w[o4 + last] = t4;
    w[o5 + last] = t5;
  }
  for (; r < rows; r++) {
    const o = r * ld;
    let t = w[o + first];
    for (let j = first; j < last; j++) {
      const c = w[co + 2 * j];
      const s = w[co + 2 * j + 1];
      const x = w[o + j + 1];
      w[o + j] = s * x + c * t;
      t = c * x - s * t;
    }
    w[o + last] = t;
  }
}

/**
 * Two backward sequences A then B over the same columns [first, last] in one pass per row: B lags one
 * column behind A and takes A's final values straight from registers, so each element is loaded and
 * stored once for two rotations. A's rotations are at offset coA, B's at coB (as in rotateBackward);
 * pad a sequence with identity rotations (c = 1, s = 0) where it does not reach.
 */
export function rotateBackward2(
  w: Float64Array,
  rows: number,
  ld: number,
  first: number,
  last: number,
  coA: number,
  coB: number,
): void {
  if (last <= first) return;
  let r = 0;
  for (; r + 3 < rows; r += 4) {
    const o0 = r * ld;
    const o1 = o0 + ld;
    const o2 = o1 + ld;
    const o3 = o2 + ld;
    const j0 = last - 1;
    let c = w[coA + 2 * j0];
    let s = w[coA + 2 * j0 + 1];
    let x0 = w[o0 + j0];
    let x1 = w[o1 + j0];
    let x2 = w[o2 + j0];
    let x3 = w[o3 + j0];
    let a0 = w[o0 + last];
    let a1 = w[o1 + last];
    let a2 = w[o2 + last];
    let a3 = w[o3 + last];
    // A's first step finalises column `last`, which starts B's carry.
    let b0 = c * a0 - s * x0;
    let b1 = c * a1 - s * x1;
    let b2 = c * a2 - s * x2;
    let b3 = c * a3 - s * x3;
    a0 = s * a0 + c * x0;
    a1 = s * a1 + c * x1;
    a2 = s * a2 + c * x2;
    a3 = s * a3 + c * x3;
    for (let j = last - 2; j >= first; j--) {
      c = w[coA + 2 * j];
      s = w[coA + 2 * j + 1];
      const cb = w[coB + 2 * j + 2];
      const sb = w[coB + 2 * j + 3];
      x0 = w[o0 + j];
      x1 = w[o1 + j];
      x2 = w[o2 + j];
      x3 = w[o3 + j];
      // A-final column j+1 ...
      const f0 = c * a0 - s * x0;
      const f1 = c * a1 - s * x1;
      const f2 = c * a2 - s * x2;
      const f3 = c * a3 - s * x3;
      a0 = s * a0 + c * x0;
      a1 = s * a1 + c * x1;
      a2 = s * a2 + c * x2;
      a3 = s * a3 + c * x3;
      // ... goes straight into B's step at j+1, which finalises column j+2.
      w[o0 + j + 2] = cb * b0 - sb * f0;
      w[o1 + j + 2] = cb * b1 - sb * f1;
      w[o2 + j + 2] = cb * b2 - sb * f2;
      w[o3 + j + 2] = cb * b3 - sb * f3;
      b0 = sb * b0 + cb * f0;
      b1 = sb * b1 + cb * f1;
      b2 = sb * b2 + cb * f2;
      b3 = sb * b3 + cb * f3;
    }
    // B's last step, at `first`, with A's final column `first`.
    c = w[coB + 2 * first];
    s = w[coB + 2 * first + 1];
    w[o0 + first + 1] = c * b0 - s * a0;
    w[o1 + first + 1] = c * b1 - s * a1;
    w[o2 + first + 1] = c * b2 - s * a2;
    w[o3 + first + 1] = c * b3 - s * a3;
    w[o0 + first] = s * b0 + c * a0;
    w[o1 + first] = s * b1 + c * a1;
    w[o2 + first] = s * b2 + c * a2;
    w[o3 + first] = s * b3 + c * a3;
  }
  if (r < rows) {
    rotateBackward(w.subarray(r * ld), rows - r, ld, first, last, coA - r * ld);
    rotateBackward(w.subarray(r * ld), rows - r, ld, first, last, coB - r * ld);
  }
}

/** As rotateBackward2 for two forward sequences (see rotateForward). */
export function rotateForward2(
  w: Float64Array,
  rows: number,
  ld: number,
  first: number,
  last: number,
  coA: number,
  coB: number,
): void {
  if (last <= first) return;
  let r = 0;
  for (; r + 3 < rows; r += 4) {
    const o0 = r * ld;
    const o1 = o0 + ld;
    const o2 = o1 + ld;
    const o3 = o2 + ld;
    let c = w[coA + 2 * first];
    let s = w[coA + 2 * first + 1];
    let x0 = w[o0 + first + 1];
    let x1 = w[o1 + first + 1];
    let x2 = w[o2 + first + 1];
    let x3 = w[o3 + first + 1];
    let a0 = w[o0 + first];
    let a1 = w[o1 + first];
    let a2 = w[o2 + first];
    let a3 = w[o3 + first];
    // A's first step finalises column `first`, which starts B's carry.
    let b0 = s * x0 + c * a0;
    let b1 = s * x1 + c * a1;
    let b2 = s * x2 + c * a2;
    let b3 = s * x3 + c * a3;
    a0 = c * x0 - s * a0;
    a1 = c * x1 - s * a1;
    a2 = c * x2 - s * a2;
    a3 = c * x3 - s * a3;
    for (let j = first + 1; j < last; j++) {
      c = w[coA + 2 * j];
      s = w[coA + 2 * j + 1];
      const cb = w[coB + 2 * j - 2];
      const sb = w[coB + 2 * j - 1];
      x0 = w[o0 + j + 1];
      x1 = w[o1 + j + 1];
      x2 = w[o2 + j + 1];
      x3 = w[o3 + j + 1];
      // A-final column j ...
      const f0 = s * x0 + c * a0;
      const f1 = s * x1 + c * a1;
      const f2 = s * x2 + c * a2;
      const f3 = s * x3 + c * a3;
      a0 = c * x0 - s * a0;
      a1 = c * x1 - s * a1;
      a2 = c * x2 - s * a2;
      a3 = c * x3 - s * a3;
      // ... goes straight into B's step at j−1, which finalises column j−1.
      w[o0 + j - 1] = sb * f0 + cb * b0;
      w[o1 + j - 1] = sb * f1 + cb * b1;
      w[o2 + j - 1] = sb * f2 + cb * b2;
      w[o3 + j - 1] = sb * f3 + cb * b3;
      b0 = cb * f0 - sb * b0;
      b1 = cb * f1 - sb * b1;
      b2 = cb * f2 - sb * b2;
      b3 = cb * f3 - sb * b3;
    }
    // B's last step, at last−1, with A's final column `last`.
    c = w[coB + 2 * (last - 1)];
    s = w[coB + 2 * (last - 1) + 1];
    w[o0 + last - 1] = s * a0 + c * b0;
    w[o1 + last - 1] = s * a1 + c * b1;
    w[o2 + last - 1] = s * a2 + c * b2;
    w[o3 + last - 1] = s * a3 + c * b3;
    w[o0 + last] = c * a0 - s * b0;
    w[o1 + last] = c * a1 - s * b1;
    w[o2 + last] = c * a2 - s * b2;
    w[o3 + last] = c * a3 - s * b3;
  }
  if (r < rows) {
    rotateForward(w.subarray(r * ld), rows - r, ld, first, last, coA - r * ld);
    rotateForward(w.subarray(r * ld), rows - r, ld, first, last, coB - r * ld);
  }
}
