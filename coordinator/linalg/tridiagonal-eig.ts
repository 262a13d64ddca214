/**
 * Eigenvalues and eigenvectors of a symmetric tridiagonal matrix by implicit QL/QR: a port of LAPACK
 * dsteqr (compz = "V") — Wilkinson shifts, QL or QR per block depending on which end holds the larger
 * diagonal entry, scaling of blocks whose norm is near over/underflow — with two changes for speed.
 *
 * Nearly all of the time goes into applying each sweep's rotations to the n×n eigenvector matrix
 * (rotations.ts), n·(sweep length) element updates per sweep, so the changes cut the number of sweeps:
 * 1. Perfect shifts. The eigenvalues are first computed without vectors (O(n²)) and then used as
 *    shifts: in exact arithmetic a sweep shifted by an eigenvalue of the block deflates it at once.
 *    Rounding can leave the off-diagonal a little above the threshold (Parlett & Le, forward
 *    instability); the following sweeps for that eigenvalue then use Wilkinson shifts. The shift only
 *    chooses which orthogonal similarity is applied, so backward stability does not depend on it.
 * 2. An absolute deflation threshold next to dsteqr's relative one (see ABS_TOL).
 * Measured on 768×768: a Wishart matrix needs 0.64 n³ element updates instead of 0.88 n³; a covariance
 * with eigenvalues 10^(−k/20) 0.06 n³ instead of 0.69 n³, as its many eigenvalues below the threshold
 * deflate without sweeps.
 */

import { rotateBackward, rotateBackward2, rotateForward, rotateForward2 } from "./rotations.js";

const EPS = 2 ** -53;
const EPS2 = EPS * EPS;
const SAFMIN = 2 ** -1022;
const SAFMAX = 1 / SAFMIN;
const SSFMAX = Math.sqrt(SAFMAX) / 3;
const SSFMIN = Math.sqrt(SAFMIN) / EPS2;
const MAXIT = 30;
/**
 * Besides dsteqr's relative test, an off-diagonal entry below ABS_TOL·ε·‖block‖ counts as zero. For a
 * tridiagonal matrix that came from a dense one this loses nothing (the reduction already made
 * absolute errors of a few n·ε·‖A‖), and it is what lets most perfect-shift sweeps deflate at once:
 * their residual off-diagonal is typically a few ε·‖T‖, rarely below the relative threshold.
 */
const ABS_TOL = 8;

/** Entries of workspace tridiagonalEigen needs after the n×n matrix: two sweeps of rotations. */
export const ROTATION_WORKSPACE = (n: number): number => 4 * n;

/**
 * Diagonalise T = tridiag(e, d, e) (d length n, e length n−1) in place: on return d holds the
 * eigenvalues (unsorted) and the n×n row-major matrix Z at the start of `z` (on entry Q of A = Q T Qᵀ,
 * or the identity) holds Z·(eigenvectors of T) — the eigenvector of d[j] is column j. `z` must have
 * ROTATION_WORKSPACE(n) entries of workspace after the matrix. With z = null only eigenvalues are
 * computed. e is destroyed.
 */
export function tridiagonalEigen(d: Float64Array, e: Float64Array, z: Float64Array | null, n: number): void {
  if (n <= 1) return;
  if (z === null) {
    qlqr(d, e, new Float64Array(ROTATION_WORKSPACE(n)), 0, 0, n, null);
    return;
  }
  if (z.length < n * n + ROTATION_WORKSPACE(n)) {
    throw new RangeError("tridiagonalEigen: z needs n² + ROTATION_WORKSPACE(n) entries");
  }
  let pool: ShiftPool | null = null;
  if (n > 2) {
    const dv = d.slice();
    qlqr(dv, e.slice(), new Float64Array(ROTATION_WORKSPACE(n)), 0, 0, n, null);
    pool = new ShiftPool(dv);
  }
  qlqr(d, e, z, n, n * n, n, pool);
}

/**
 * dsteqr on (d, e), applying the rotations to `rows` rows of the n-column matrix at the start of `w`.
 * The rotations of a sweep go to w[co : co + 2n] or w[co + 2n : co + 4n]: sweeps are applied in pairs
 * (rotateBackward2/rotateForward2), since the iteration on (d, e) never reads the matrix. With a pool,
 * the first sweep for each eigenvalue is shifted by the pool's eigenvalue nearest to the Wilkinson
 * shift.
 */
function qlqr(
  d: Float64Array,
  e: Float64Array,
  w: Float64Array,
  rows: number,
  coA: number,
  n: number,
  pool: ShiftPool | null,
): void {
  const nmaxit = n * MAXIT;
  const coB = coA + 2 * n;
  // The sweep waiting for a partner, as its column range [pf, pl] (rotations in slot A); pf < 0: none.
  let pf = -1;
  let pl = -1;
  let forward = false;
  /** Where the next sweep writes its rotations. */
  const slot = () => (pf < 0 ? coA : coB);
  /** Queue the sweep just written to slot(), applying it together with the waiting one. */
  const push = (first: number, last: number) => {
    if (rows === 0) return;
    if (pf < 0) {
      pf = first;
      pl = last;
      return;
    }
    const f = Math.min(pf, first);
    const l = Math.max(pl, last);
    if (l - f > pl - pf + (last - first) + 8) {
      // Far-apart ranges: padding would cost more than it saves.
      if (forward) {
        rotateForward(w, rows, n, pf, pl, coA);
        rotateForward(w, rows, n, first, last, coB);
      } else {
        rotateBackward(w, rows, n, pf, pl, coA);
        rotateBackward(w, rows, n, first, last, coB);
      }
      pf = -1;
      return;
    }
    padIdentity(w, coA, f, l, pf, pl);
    padIdentity(w, coB, f, l, first, last);
    if (forward) rotateForward2(w, rows, n, f, l, coA, coB);
    else rotateBackward2(w, rows, n, f, l, coA, coB);
    pf = -1;
  };
  const flush = () => {
    if (pf < 0) return;
    if (forward) rotateForward(w, rows, n, pf, pl, coA);
    else rotateBackward(w, rows, n, pf, pl, coA);
    pf = -1;
  };
  let jtot = 0;
  let failed = false;
  let l1 = 0;
  // Each pass of this loop isolates one unreduced block [l, lend] and diagonalises it.
  while (l1 < n) {
    if (l1 > 0) e[l1 - 1] = 0;
    let m = l1;
    for (; m < n - 1; m++) {
      const tst = Math.abs(e[m]);
      if (tst === 0) break;
      if (tst <= Math.sqrt(Math.abs(d[m])) * Math.sqrt(Math.abs(d[m + 1])) * EPS) {
        e[m] = 0;
        break;
      }
    }
    let l = l1;
    const lsv = l;
    let lend = m;
    const lendsv = lend;
    l1 = m + 1;
    if (lend === l) continue;

    // Scale the block when its entries are near over- or underflow.
    let anorm = 0;
    for (let i = l; i <= lend; i++) anorm = Math.max(anorm, Math.abs(d[i]));
    for (let i = l; i < lend; i++) anorm = Math.max(anorm, Math.abs(e[i]));
    if (anorm === 0) continue;
    let scaledTo = 0;
    if (anorm > SSFMAX) scaledTo = SSFMAX;
    else if (anorm < SSFMIN) scaledTo = SSFMIN;
    if (scaledTo !== 0) scaleBlock(d, e, l, lend, scaledTo / anorm);
    // The pool holds unscaled eigenvalues; scaled blocks (extreme magnitudes only) do without it.
    const shifts = scaledTo === 0 ? pool : null;
    let tries = 0;
    const bn = scaledTo !== 0 ? scaledTo : anorm;
    const absTol2 = (ABS_TOL * EPS * bn) ** 2;

    // Chase toward the end with the smaller diagonal entry: QL if the bottom is larger, else QR.
    if (Math.abs(d[lend]) < Math.abs(d[l])) {
      lend = lsv;
      l = lendsv;
    }

    forward = lend < l;
    if (lend > l) {
      // QL iteration: eigenvalues converge at the top (index l) of the block.
      while (l <= lend) {
        let mm = l;
        for (; mm < lend; mm++) {
          const tst = e[mm] * e[mm];
          if (tst <= EPS2 * Math.abs(d[mm]) * Math.abs(d[mm + 1]) + SAFMIN || tst <= absTol2) break;
        }
        if (mm < lend) e[mm] = 0;
        let p = d[l];
        if (mm === l) {
          // Eigenvalue found.
          d[l] = p;
          shifts?.take(p);
          l++;
          tries = 0;
          continue;
        }
        if (mm === l + 1) {
          // 2×2 block: solve it directly.
          const r = eig2x2(d[l], e[l], d[l + 1]);
          const co = slot();
          w[co + 2 * l] = r.cs;
          w[co + 2 * l + 1] = r.sn;
          push(l, l + 1);
          d[l] = r.rt1;
          d[l + 1] = r.rt2;
          e[l] = 0;
          shifts?.take(r.rt1);
          shifts?.take(r.rt2);
          l += 2;
          tries = 0;
          continue;
        }
        if (jtot === nmaxit) {
          failed = true;
          break;
        }
        jtot++;
        // Wilkinson shift from the top 2×2, or the nearest known eigenvalue.
        let g = (d[l + 1] - p) / (2 * e[l]);
        let r = Math.hypot(g, 1);
        g = shiftedStart(d[mm], p - e[l] / (g + (g >= 0 ? r : -r)), shifts, tries++);
        let s = 1;
        let c = 1;
        p = 0;
        const co = slot();
        for (let i = mm - 1; i >= l; i--) {
          const f = s * e[i];
          const b = c * e[i];
          // Givens rotation (c, s, r) with c·g + s·f = r, −s·g + c·f = 0 (LAPACK dlartg).
          if (f === 0) {
            c = 1;
            s = 0;
            r = g;
          } else if (g === 0) {
            c = 0;
            s = 1;
            r = f;
          } else {
            const h = Math.hypot(g, f);
            r = g >= 0 ? h : -h;
            c = g / r;
            s = f / r;
          }
          if (i !== mm - 1) e[i + 1] = r;
          g = d[i + 1] - p;
          r = (d[i] - g) * s + 2 * c * b;
          p = s * r;
          d[i + 1] = g + p;
          g = c * r - b;
          w[co + 2 * i] = c;
          w[co + 2 * i + 1] = -s;
        }
        push(l, mm);
        d[l] -= p;
        e[l] = g;
      }
    } else {
      // QR iteration: eigenvalues converge at the bottom (index l) of the block.
      while (l >= lend) {
        let mm = l;
        for (; mm > lend; mm--) {
          const tst = e[mm - 1] * e[mm - 1];
          if (tst <= EPS2 * Math.abs(d[mm]) * Math.abs(d[mm - 1]) + SAFMIN || tst <= absTol2) break;
        }
        if (mm > lend) e[mm - 1] = 0;
        let p = d[l];
        if (mm === l) {
          d[l] = p;
          shifts?.take(p);
          l--;
          tries = 0;
          continue;
        }
        if (mm === l - 1) {
          const r = eig2x2(d[l - 1], e[l - 1], d[l]);
          const co = slot();
          w[co + 2 * mm] = r.cs;
          w[co + 2 * mm + 1] = r.sn;
          push(l - 1, l);
          d[l - 1] = r.rt1;
          d[l] = r.rt2;
          e[l - 1] = 0;
          shifts?.take(r.rt1);
          shifts?.take(r.rt2);
          l -= 2;
          tries = 0;
          continue;
        }
        if (jtot === nmaxit) {
          failed = true;
          break;
        }
        jtot++;
        let g = (d[l - 1] - p) / (2 * e[l - 1]);
        let r = Math.hypot(g, 1);
        g = shiftedStart(d[mm], p - e[l - 1] / (g + (g >= 0 ? r : -r)), shifts, tries++);
        let s = 1;
        let c = 1;
        p = 0;
        const co = slot();
        for (let i = mm; i <= l - 1; i++) {
          const f = s * e[i];
          const b = c * e[i];
          if (f === 0) {
            c = 1;
            s = 0;
            r = g;
          } else if (g === 0) {
            c = 0;
            s = 1;
            r = f;
          } else {
            const h = Math.hypot(g, f);
            r = g >= 0 ? h : -h;
            c = g / r;
            s = f / r;
          }
          if (i !== mm) e[i - 1] = r;
          g = d[i] - p;
          r = (d[i + 1] - g) * s + 2 * c * b;
          p = s * r;
          d[i] = g + p;
          g = c * r - b;
          w[co + 2 * i] = c;
          w[co + 2 * i + 1] = s;
        }
        push(mm, l);
        d[l] -= p;
        e[l - 1] = g;
      }
    }

    flush();
    if (scaledTo !== 0) scaleBlock(d, e, lsv, lendsv, anorm / scaledTo);
    if (failed) {
      throw new Error(`tridiagonalEigen: no convergence after ${jtot} QL/QR sweeps (n = ${n})`);
    }
  }
}

/** d_m − σ, the start of the implicit sweep, with σ the Wilkinson shift or a perfect shift. */
function shiftedStart(dm: number, wilkinson: number, pool: ShiftPool | null, tries: number): number {
  // One perfect-shift attempt per eigenvalue: when it does not deflate, Wilkinson shifts converge
  // from there (cubically) while retrying a nearly-perfect shift would stall the same way.
  if (pool === null || tries > 0) return dm - wilkinson;
  const sigma = pool.nearest(wilkinson);
  return dm - (Number.isNaN(sigma) ? wilkinson : sigma);
}

/** Eigenvalues not yet deflated, sorted, for nearest-value look-ups. */
class ShiftPool {
  private readonly v: Float64Array;
  private readonly used: Uint8Array;

  constructor(values: Float64Array) {
    this.v = values.slice().sort();
    this.used = new Uint8Array(values.length);
  }

  /** The unused value nearest to x, or NaN if none is left. */
  nearest(x: number): number {
    const k = this.find(x);
    return k < 0 ? Number.NaN : this.v[k];
  }

  /** Mark the unused value nearest to x as used. */
  take(x: number): void {
    const k = this.find(x);
    if (k >= 0) this.used[k] = 1;
  }

  private find(x: number): number {
    const v = this.v;
    let lo = 0;
    let hi = v.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (v[mid] < x) lo = mid + 1;
      else hi = mid;
    }
    let a = lo - 1;
    while (a >= 0 && this.used[a]) a--;
    let b = lo;
    while (b < v.length && this.used[b]) b++;
    if (a < 0) return b < v.length ? b : -1;
    if (b >= v.length) return a;
    return x - v[a] <= v[b] - x ? a : b;
  }
}

/** Identity rotations in slot `co` at positions [f, l) outside the sweep's own range [sf, sl). */
function padIdentity(w: Float64Array, co: number, f: number, l: number, sf: number, sl: number): void {
  for (let j = f; j < sf; j++) {
    w[co + 2 * j] = 1;
    w[co + 2 * j + 1] = 0;
  }
  for (let j = sl; j < l; j++) {
    w[co + 2 * j] = 1;
    w[co + 2 * j + 1] = 0;
  }
}

function scaleBlock(d: Float64Array, e: Float64Array, lo: number, hi: number, f: number): void {
  for (let i = lo; i <= hi; i++) d[i] *= f;
  for (let i = lo; i < hi; i++) e[i] *= f;
}

/**
 * Eigen-decomposition of [[a, b], [b, c]] (LAPACK dlaev2): rt1 has the larger absolute value, and
 * (cs, sn) is its unit eigenvector. Written to avoid overflow and cancellation.
 */
function eig2x2(a: number, b: number, c: number): { rt1: number; rt2: number; cs: number; sn: number } {
  const sm = a + c;
  const df = a - c;
  const adf = Math.abs(df);
  const tb = b + b;
  const ab = Math.abs(tb);
  let acmx: number;
  let acmn: number;
  if (Math.abs(a) > Math.abs(c)) {
    acmx = a;
    acmn = c;
  } else {
    acmx = c;
    acmn = a;
  }
  let rt: number;
  if (adf > ab) rt = adf * Math.sqrt(1 + (ab / adf) ** 2);
  else if (adf < ab) rt = ab * Math.sqrt(1 + (adf / ab) ** 2);
  else rt = ab * Math.SQRT2;
  let rt1: number;
  let rt2: number;
  let sgn1: number;
  if (sm < 0) {
    rt1 = 0.5 * (sm - rt);
    sgn1 = -1;
    rt2 = (acmx / rt1) * acmn - (b / rt1) * b;
  } else if (sm > 0) {
    rt1 = 0.5 * (sm + rt);
    sgn1 = 1;
    rt2 = (acmx / rt1) * acmn - (b / rt1) * b;
  } else {
    rt1 = 0.5 * rt;
    rt2 = -0.5 * rt;
    sgn1 = 1;
  }
  let cs: number;
  let sgn2: number;
  if (df >= 0) {
    cs = df + rt;
    sgn2 = 1;
  } else {
    cs = df - rt;
    sgn2 = -1;
  }
  let cs1: number;
  let sn1: number;
  if (Math.abs(cs) > ab) {
    const ct = -tb / cs;
    sn1 = 1 / Math.sqrt(1 + ct * ct);
    cs1 = ct * sn1;
  } else if (ab === 0) {
    cs1 = 1;
    sn1 = 0;
  } else {
    const tn = -cs / tb;
    cs1 = 1 / Math.sqrt(1 + tn * tn);
    sn1 = tn * cs1;
  }
  if (sgn1 === sgn2) {
    const tn = cs1;
    cs1 = -sn1;
    sn1 = tn;
  }
  return { rt1, rt2, cs: cs1, sn: sn1 };
}
