/**
 * The DualGPM memory of old-task input subspaces, per layer, as the reference's `update_DualGPM` keeps it
 * (float64 throughout). A `remove` basis spans the old tasks' subspace; a `retain` basis spans its
 * orthogonal complement (used once the old subspace grows past D/2). The reference feeds the covariance
 * matrix itself to these SVDs, and so do we.
 */

import { columns, frobenius, hstack, type Mat, matmul, matmulAtB, sub } from "../linalg/matrix.js";
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

/** Orthonormal basis of the orthogonal complement of span(basis) (basis: D×k orthonormal columns). */
export function complement(basis: Mat): Mat {
  // The eigenvectors of the projector U Uᵀ: k eigenvalues 1, then D − k zeros spanning the complement.
  const { u } = leftSingular(basis);
  return columns(u, basis.cols, basis.rows);
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

/** One layer's update after a task from that task's (post-training) input covariance C. */
export function updateLayer(memory: LayerMemory | undefined, c: Mat, opts: UpdateOptions): LayerMemory {
  const D = c.rows;
  const eps = opts.threshold;
  if (!memory) {
    const { u, s2 } = leftSingularSymmetric(c);
    const r = firstTaskRank(s2, eps);
    const k = Math.max(r, 1);
    if (opts.gpmOnly || r < D / 2) return { basis: columns(u, 0, k), type: "remove" };
    // The reference stores U[:, :r] here yet types it `retain`; the retain basis must be the complement.
    return { basis: columns(u, k, D), type: "retain" };
  }
  const svalTotal = frobenius(c) ** 2;
  if (memory.type === "remove") {
    const actHat = sub(c, project(memory.basis, c));
    const { u, s2 } = leftSingular(actHat);
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
    if (r === 0) return memory;
    const grown = hstack(memory.basis, columns(u, 0, r));
    return { basis: grown.cols > D ? columns(grown, 0, D) : grown, type: "remove" };
  }
  const actHat = project(memory.basis, c);
  const { u, s2 } = leftSingular(actHat);
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
  if (r === 0) return memory;
  // Remove the newly used directions from the retained subspace.
  const ur = columns(u, 0, r);
  const feature = sub(memory.basis, matmul(ur, matmulAtB(ur, memory.basis)));
  const k = memory.basis.cols;
  return { basis: columns(leftSingular(feature).u, 0, Math.max(k - r, 0)), type: "retain" };
}

/** The reference's summary step: a `remove` basis wider than D/2 becomes the `retain` basis of its complement. */
export function summarize(memory: LayerMemory, gpmOnly: boolean): LayerMemory {
  const D = memory.basis.rows;
  if (!gpmOnly && memory.type === "remove" && memory.basis.cols > D / 2) {
    return { basis: complement(memory.basis), type: "retain" };
  }
  return memory;
}

/** Updates every layer: the per-layer rule, then the summary step. */
export function updateDualGpm(
  memories: readonly (LayerMemory | undefined)[],
  covariances: readonly Mat[],
  opts: UpdateOptions,
): LayerMemory[] {
  return covariances.map((c, i) => summarize(updateLayer(memories[i], c, opts), opts.gpmOnly));
}
