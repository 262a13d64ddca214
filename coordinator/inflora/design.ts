/**
 * Design of B_t before task t (paper Eq. 7 with the DualGPM projection): the top-r left singular vectors
 * of the (projected) input covariance, scaled by 1/√3, shared by the key and value adapters.
 */

import type { Mat } from "../linalg/matrix.js";
import { leftSingular, leftSingularSymmetric } from "../linalg/svd.js";
import { type LayerMemory, project, residual } from "./dualgpm.js";

/** B [r, D] row-major in float64: row j is the j-th singular vector / √3. */
export function designB(c: Mat, rank: number, memory: LayerMemory | undefined): Float64Array {
  const D = c.rows;
  if (rank > D) throw new Error(`rank ${rank} exceeds the width ${D}`);
  // Only the r leading vectors are needed: with LAPACK only those are computed.
  const leading = () => [0, rank] as const;
  let u: Mat;
  if (!memory) u = leftSingularSymmetric(c, leading).u;
  else {
    const projected = memory.type === "remove" ? residual(memory.basis, c) : project(memory.basis, c);
    u = leftSingular(projected, leading).u;
  }
  const b = new Float64Array(rank * D);
  const inv = 1 / Math.sqrt(3);
  for (let j = 0; j < rank; j++) for (let i = 0; i < D; i++) b[j * D + i] = u.data[i * rank + j] * inv;
  return b;
}

/** For warming up worker threads: loading this module is the work. */
export function ready(): boolean {
  return true;
}
