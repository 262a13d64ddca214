/**
 * The DualGPM memory of old-task input subspaces, per layer, as the reference's `update_DualGPM` keeps it
 * (float64 throughout). A `remove` basis spans the old tasks' subspace; a `retain` basis spans its
 * orthogonal complement (used once the old subspace grows past D/2). The reference feeds the covariance
 * matrix itself to these SVDs, and so do we.
 */

import { orthogonalComplement } from "../linalg/complement.js";
import { frobenius, hstack, type Mat, matmul, matmulAtB, sub } from "../linalg/matrix.js";
import { leftSingular, leftSingularSymmetric } from "../linalg/svd.js";

export type ProjectionType = "remove" | "retain";

export interface LayerMemory {
  readonly basis: Mat;
  readonly type: ProjectionType;
}

/** ε_t = (lame − lamb)·t/T + lamb. */
export function threshold(lamb: number, lame: number, task: number, totalSessions: number): number {
  return ((lame - lamb) * task) / totalSessions + lamb;
}

/** M C with M = U Uᵀ, computed as U (Uᵀ C). */
export function project(basis: Mat, c: Mat): Mat {
  return matmul(basis, matmulAtB(basis, c));
}

/** C − M C, computed in the buffer of M C (one D×D allocation instead of two). */
export function residual(basis: Mat, c: Mat): Mat {
  const out = project(basis, c);
  const o = out.data;
  const src = c.data;
  for (let i = 0; i < o.length; i++) o[i] = src[i] - o[i];
  return out;
}

/** Orthonormal basis of the orthogonal complement of span(basis) (basis: D×k orthonormal columns). */
export function complement(basis: Mat): Mat {
  return orthogonalComplement(basis);
}

/** Number of leading directions whose energy share of C stays below the threshold (Eq. 5). */
function firstTaskRank(s2: Float64Array, eps: number): number {
  let total = 0;
  for (const v of s2) total += v;
  let cum = 0;
  let r = 0;
  for (const v of s2) {
    cum += v / total;
    if (cum < eps) r++;
  }
  return r;
}

export interface UpdateOptions {
  readonly threshold: number;
  /** InfLoRA-b5: plain GPM, every layer `remove`, no switch to `retain`. */
  readonly gpmOnly: boolean;
}

/**
 * One layer's update after a task from that task's (post-training) input covariance C. Every rule needs
 * all squared singular values but only a few leading vectors, so each SVD is asked for just the columns
 * it keeps (the selectors below): with LAPACK that skips most of the eigenvector work.
 */
export function updateLayer(memory: LayerMemory | undefined, c: Mat, opts: UpdateOptions): LayerMemory {
  const D = c.rows;
  const eps = opts.threshold;
  if (!memory) {
    let retain = false;
    const { u } = leftSingularSymmetric(c, (s2) => {
      const r = firstTaskRank(s2, eps);
      const k = Math.max(r, 1);
      retain = !opts.gpmOnly && r >= D / 2;
      // The reference stores U[:, :r] here yet types it `retain`; the retain basis must be the complement.
      return retain ? [k, D] : [0, k];
    });
    return { basis: u, type: retain ? "retain" : "remove" };
  }
  const svalTotal = frobenius(c) ** 2;
  if (memory.type === "remove") {
    const actHat = residual(memory.basis, c);
    const { u } = leftSingular(actHat, (s2) => {
      let svalHat = 0;
      for (const v of s2) svalHat += v;
      let accumulated = (svalTotal - svalHat) / svalTotal;
      let r = 0;
      for (let i = 0; i < s2.length; i++) {
        if (accumulated < eps) {
          accumulated += s2[i] / svalTotal;
          r++;
        } else break;
      }
      return [0, Math.min(r, D - memory.basis.cols)];
    });
    if (u.cols === 0) return memory;
    return { basis: hstack(memory.basis, u), type: "remove" };
  }
  const actHat = project(memory.basis, c);
  const { u: ur } = leftSingular(actHat, (s2) => {
    let accumulated = 0;
    for (const v of s2) accumulated += v;
    accumulated /= svalTotal;
    let r = 0;
    for (let i = 0; i < s2.length; i++) {
      if (accumulated >= 1 - eps) {
        accumulated -= s2[i] / svalTotal;
        r++;
      } else break;
    }
    return [0, r];
  });
  const r = ur.cols;
  if (r === 0) return memory;
  // Remove the newly used directions from the retained subspace.
  const feature = sub(memory.basis, matmul(ur, matmulAtB(ur, memory.basis)));
  const k = memory.basis.cols;
  const { u } = leftSingular(feature, () => [0, Math.max(k - r, 0)]);
  return { basis: u, type: "retain" };
}

/** The reference's summary step: a `remove` basis wider than D/2 becomes the `retain` basis of its complement. */
export function summarize(memory: LayerMemory, gpmOnly: boolean): LayerMemory {
  const D = memory.basis.rows;
  if (!gpmOnly && memory.type === "remove" && memory.basis.cols > D / 2) {
    return { basis: complement(memory.basis), type: "retain" };
  }
  return memory;
}

/** One layer: the per-layer rule, then the summary step. */
export function updateLayerAndSummarize(
  memory: LayerMemory | undefined,
  c: Mat,
  opts: UpdateOptions,
): LayerMemory {
  return summarize(updateLayer(memory, c, opts), opts.gpmOnly);
}

/** Updates every layer on this thread (layers_parallel.ts spreads them over threads). */
export function updateDualGpm(
  memories: readonly (LayerMemory | undefined)[],
  covariances: readonly Mat[],
  opts: UpdateOptions,
): LayerMemory[] {
  return covariances.map((c, i) => updateLayerAndSummarize(memories[i], c, opts));
}

/** For warming up worker threads: loading this module is the work. */
export function ready(): boolean {
  return true;
}
