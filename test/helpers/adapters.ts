/** Random adapter sets and the fold they define, computed naively in float64 as an independent reference. */
import type { AdapterSet } from "../../common/adapters.js";
import { randomArray } from "./tiny_vit.js";

/** Two blocks of random factors of width D. */
export function randomAdapterSet(D: number, rank: number, seed: number): AdapterSet {
  const blocks = (n: number, s: number) => [randomArray(n, s), randomArray(n, s + 1)];
  return {
    rank,
    Bk: blocks(rank * D, seed),
    Bv: blocks(rank * D, seed + 10),
    Ak: blocks(D * rank, seed + 20),
    Av: blocks(D * rank, seed + 30),
  };
}

/** Σ_s A_s B_s [D, D] for one block, element by element in float64. */
export function exactProduct(
  sets: readonly AdapterSet[],
  D: number,
  block: number,
  which: "k" | "v",
): Float64Array {
  const out = new Float64Array(D * D);
  for (const s of sets) {
    const A = which === "k" ? s.Ak[block] : s.Av[block];
    const B = which === "k" ? s.Bk[block] : s.Bv[block];
    for (let o = 0; o < D; o++)
      for (let i = 0; i < D; i++)
        for (let j = 0; j < s.rank; j++) out[o * D + i] += A[o * s.rank + j] * B[j * D + i];
  }
  return out;
}
