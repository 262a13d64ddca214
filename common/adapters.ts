/**
 * InfLoRA's adapters and heads as every boundary holds them: checkpoints, the protocol, the worker's model
 * and export. Paper notation, row-major float32, one entry per block: B [r, D] (designed), A [D, r]
 * (trained). Task s's adapter adds A_s B_s to a block's key and value weights, so after task t the model
 * computes with W + Σ_{s≤t} A_s B_s; `foldAdapters` is that sum.
 *
 * The adapter under training changes every step and is folded on the worker's device, head by head
 * (worker/model/live_fold.ts); what is here serves the finished ones.
 */

/** One task's adapters, per block. InfLoRA's k and v share B; they are stored apart as the reference does. */
export interface AdapterSet {
  readonly rank: number;
  readonly Bk: readonly Float32Array[];
  readonly Bv: readonly Float32Array[];
  readonly Ak: readonly Float32Array[];
  readonly Av: readonly Float32Array[];
}

/** One task's classifier: logits = x Wᵀ + b. */
export interface Head {
  readonly classes: number;
  /** [classes, D] row-major. */
  readonly weight: Float32Array;
  readonly bias: Float32Array;
}

/** The heads one under the other: the classifier over every class they cover, in task order. */
export function concatHeads(heads: readonly Head[], D: number): Head {
  const classes = heads.reduce((n, h) => n + h.classes, 0);
  const weight = new Float32Array(classes * D);
  const bias = new Float32Array(classes);
  let row = 0;
  for (const h of heads) {
    weight.set(h.weight, row * D);
    bias.set(h.bias, row);
    row += h.classes;
  }
  return { classes, weight, bias };
}

/**
 * The factors of every set side by side, A_cat = [A_1 … A_S] [D, R] and B_cat = [B_1; …; B_S] [R, D]
 * (R = Σ r_s), so that Σ_s A_s B_s is one matrix product.
 */
export interface StackedFactors {
  readonly A: Float32Array;
  readonly B: Float32Array;
  readonly R: number;
}

/** Σ_s A_s B_s as A_cat · B_cat [D, D], computed by the caller (the worker: one matmul on its backend). */
export type StackedProduct = (f: StackedFactors, D: number) => Float32Array;

export type Projection = "k" | "v";

function factors(set: AdapterSet, block: number, which: Projection): { A: Float32Array; B: Float32Array } {
  return which === "k" ? { A: set.Ak[block], B: set.Bk[block] } : { A: set.Av[block], B: set.Bv[block] };
}

export function stackFactors(
  sets: readonly AdapterSet[],
  block: number,
  which: Projection,
  D: number,
): StackedFactors {
  const R = sets.reduce((n, s) => n + s.rank, 0);
  const A = new Float32Array(D * R);
  const B = new Float32Array(R * D);
  let col = 0;
  for (const s of sets) {
    const f = factors(s, block, which);
    for (let i = 0; i < D; i++) A.set(f.A.subarray(i * s.rank, (i + 1) * s.rank), i * R + col);
    B.set(f.B, col * D);
    col += s.rank;
  }
  return { A, B, R };
}

/** base + delta element-wise, the sum taken in float64 and rounded once. */
export function addRounded(base: Float32Array, delta: ArrayLike<number>): Float32Array {
  const out = new Float32Array(base.length);
  for (let i = 0; i < base.length; i++) out[i] = base[i] + delta[i];
  return out;
}

/**
 * W + Σ_s A_s B_s for block `block`'s key or value weight `base` ([D, D], rows = output features), in one
 * of two numerics, each fixed because runs and exports must stay bit-identical:
 * - `product` given (the worker's fold): Σ_s A_s B_s is one float32 product on the backend (stackFactors),
 *   added to W in float64 and rounded once;
 * - otherwise (export): everything on the host, each term accumulated into W in float64, set after set and
 *   rank after rank, rounded to float32 once at the end.
 * No sets: `base` itself.
 */
export function foldAdapters(
  base: Float32Array,
  D: number,
  sets: readonly AdapterSet[],
  block: number,
  which: Projection,
  product?: StackedProduct,
): Float32Array {
  if (sets.length === 0) return base;
  if (product) return addRounded(base, product(stackFactors(sets, block, which, D), D));
  const out = Float64Array.from(base);
  for (const s of sets) {
    const r = s.rank;
    const { A, B } = factors(s, block, which);
    for (let o = 0; o < D; o++) {
      const row = o * D;
      for (let j = 0; j < r; j++) {
        const aoj = A[o * r + j];
        if (aoj === 0) continue;
        const bRow = j * D;
        for (let i = 0; i < D; i++) out[row + i] += aoj * B[bRow + i];
      }
    }
  }
  return Float32Array.from(out);
}
