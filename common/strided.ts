import type { TypedData } from "./safetensors.js";

/**
 * The elements of a strided view copied out in C order: element (i₀, i₁, …) of the result is
 * `src[offset + Σ iₖ·strides[k]]`. numpy's Fortran order and PyTorch's tensor views are both such views.
 */
export function gatherStrided<T extends TypedData>(
  src: T,
  shape: readonly number[],
  strides: readonly number[],
  offset = 0,
): T {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new (src.constructor as new (len: number) => T)(n);
  // Element-wise copy works for every TypedData (numbers or bigints); the cast only quiets the union type.
  const o = out as unknown as Float64Array;
  const i = src as unknown as Float64Array;
  const idx = new Array<number>(shape.length).fill(0);
  let at = offset;
  for (let j = 0; j < n; j++) {
    o[j] = i[at];
    for (let k = shape.length - 1; k >= 0; k--) {
      idx[k]++;
      at += strides[k];
      if (idx[k] < shape[k]) break;
      at -= strides[k] * shape[k];
      idx[k] = 0;
    }
  }
  return out;
}
