/**
 * The initial values of a task's trained parts: its B_t and its head.
 * - Projected design (paper Eq. 7 with the DualGPM projection): the top-r left singular vectors of the
 *   (projected) input covariance, scaled by 1/√3, shared by the key and value adapters.
 * - Random design (sequential LoRA): B_t as nn.Linear initialises it, no projection.
 * - The head: nn.Linear's default initialisation, or zeros.
 */

import { counterRng } from "../../common/data/counter_rng.js";
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

/** Counter-RNG streams of the random initialisations (keyed further by task and block). */
const HEAD_STREAM = 0x4845_4144;
const SEQ_B_STREAM = 0x5345_5142;

/** B [r, D] per block, float32, uniform in ±1/√D as nn.Linear initialises it. */
export function randomB(seed: number, task: number, depth: number, rank: number, D: number): Float32Array[] {
  const bound = 1 / Math.sqrt(D);
  return Array.from({ length: depth }, (_, i) => {
    const rng = counterRng(seed, SEQ_B_STREAM, task, i);
    return Float32Array.from({ length: rank * D }, () => (2 * rng.nextFloat() - 1) * bound);
  });
}

/** Head t [classes, D] and its bias in float64: nn.Linear's default (uniform in ±1/√D), or zeros. */
export function initialHead(
  init: "torch" | "zeros",
  seed: number,
  task: number,
  classes: number,
  D: number,
): { w: Float64Array; b: Float64Array } {
  const w = new Float64Array(classes * D);
  const b = new Float64Array(classes);
  if (init === "torch") {
    const rng = counterRng(seed, HEAD_STREAM, task);
    const bound = 1 / Math.sqrt(D);
    for (let i = 0; i < w.length; i++) w[i] = (2 * rng.nextFloat() - 1) * bound;
    for (let i = 0; i < b.length; i++) b[i] = (2 * rng.nextFloat() - 1) * bound;
  }
  return { w, b };
}

/** For warming up worker threads: loading this module is the work. */
export function ready(): boolean {
  return true;
}
