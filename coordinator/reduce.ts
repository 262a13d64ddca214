/** Float64 reductions of per-micro-shard float32 results, always in micro-shard order. */

/** Σ over `parts` (already sorted by shard index) of the j-th array, in float64. */
export function sumInOrder(parts: readonly (readonly Float32Array[])[], j: number): Float64Array {
  const out = new Float64Array(parts[0][j].length);
  for (const p of parts) {
    const a = p[j];
    for (let i = 0; i < a.length; i++) out[i] += a[i];
  }
  return out;
}

export function sortByIndex<T extends { index: number }>(results: T[]): T[] {
  return [...results].sort((a, b) => a.index - b.index);
}

export function toFloat32(a: Float64Array): Float32Array {
  return Float32Array.from(a);
}
