/**
 * All eigenvalues of a symmetric matrix but only the eigenvectors the caller picks after seeing them.
 * The DualGPM rules keep a number of singular vectors that depends on the energies, and the design of B
 * keeps r ≪ n; with LAPACK the tridiagonalisation is then done once, the eigenvalues come from it, and
 * only the picked vectors are computed (MRRR) and back-transformed: for 768×768 and 10 vectors ~35 ms
 * instead of ~120 ms for a full dsyevd. Without the addon it is a full eighDescending and a column pick.
 */
import type { NativeAddon } from "../../native/index.js";
import { eighDescending, prepareSymmetric } from "./eigh.js";
import { lapack, withLapackThreads } from "./lapack.js";
import { type Mat, mat } from "./matrix.js";

export interface PickedEigh {
  /** All eigenvalues, descending. */
  readonly values: Float64Array;
  /** n×m: column j is the eigenvector of values[picked[j]]. */
  readonly vectors: Mat;
}

/**
 * `pick(values)` gets all eigenvalues (descending) and returns the distinct descending positions whose
 * eigenvectors it wants, in the order it wants them as columns.
 */
export function eighPicked(a: Mat, pick: (valuesDescending: Float64Array) => readonly number[]): PickedEigh {
  const addon = lapack();
  return addon ? pickedLapack(addon, a, pick) : pickedFromFull(eighDescending(a), pick);
}

function pickedFromFull(
  full: { values: Float64Array; vectors: Mat },
  pick: (v: Float64Array) => readonly number[],
) {
  const n = full.values.length;
  const want = checkedPick(pick(full.values), n);
  const m = want.length;
  const out = new Float64Array(n * m);
  for (let r = 0; r < n; r++) {
    for (let j = 0; j < m; j++) out[r * m + j] = full.vectors.data[r * n + want[j]];
  }
  return { values: full.values, vectors: mat(n, m, out) };
}

function checkedPick(want: readonly number[], n: number): readonly number[] {
  const seen = new Set<number>();
  for (const p of want) {
    if (!Number.isInteger(p) || p < 0 || p >= n || seen.has(p)) {
      throw new RangeError(`eighPicked: bad or repeated eigenvector position ${p} (n = ${n})`);
    }
    seen.add(p);
  }
  return want;
}

/** Above this deviation from orthonormality the MRRR vectors are not trusted (clusters): redo with dsyevd. */
const ORTHOGONALITY_LIMIT = 1e-11;

function pickedLapack(
  addon: NativeAddon,
  a: Mat,
  pick: (valuesDescending: Float64Array) => readonly number[],
): PickedEigh {
  const n = a.rows;
  if (a.cols === n && n === 0)
    return pickedFromFull({ values: new Float64Array(0), vectors: mat(0, 0) }, pick);
  const prep = prepareSymmetric(a, "eighPicked");
  if (prep.zero) return pickedFromFull(eighDescending(a), pick);
  let values = new Float64Array(0);
  let want: readonly number[] = [];
  /** For each wanted column, its column in LAPACK's block of vectors. */
  let columnOf: number[] = [];
  const result = withLapackThreads(addon, () =>
    addon.eighSelect(prep.src, n, (ascending) => {
      values = new Float64Array(n);
      for (let j = 0; j < n; j++) values[j] = prep.unscale(ascending[n - 1 - j]);
      want = checkedPick(pick(values), n);
      // LAPACK takes ranges of ascending indices: group the wanted ones into runs.
      const asc = want.map((p) => n - 1 - p).sort((x, y) => x - y);
      const ranges: number[] = [];
      const blockCol = new Map<number, number>();
      for (let i = 0; i < asc.length; i++) {
        if (i === 0 || asc[i] !== asc[i - 1] + 1) ranges.push(asc[i], asc[i] + 1);
        else ranges[ranges.length - 1] = asc[i] + 1;
        blockCol.set(asc[i], i);
      }
      columnOf = want.map((p) => blockCol.get(n - 1 - p)!);
      return ranges;
    }),
  );
  const m = want.length;
  const block = result.vectors; // column-major n×m in ascending-index order
  if (!orthonormal(addon, block, n, m)) return pickedFromFull(eighDescending(a), () => want);
  const out = new Float64Array(n * m);
  for (let j = 0; j < m; j++) {
    const src = columnOf[j] * n;
    for (let r = 0; r < n; r++) out[r * m + j] = block[src + r];
  }
  return { values, vectors: mat(n, m, out) };
}

/** Whether the m columns of the column-major n×m block are orthonormal to ORTHOGONALITY_LIMIT. */
function orthonormal(addon: NativeAddon, block: Float64Array, n: number, m: number): boolean {
  if (m === 0) return true;
  // The column-major n×m block is the row-major m×n matrix Vᵀ: Vᵀ V = block · blockᵀ.
  const g = new Float64Array(m * m);
  addon.dsyrk(block, g, m, n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j <= i; j++) {
      const dev = Math.abs(g[i * m + j] - (i === j ? 1 : 0));
      if (!(dev <= ORTHOGONALITY_LIMIT)) return false;
    }
  }
  return true;
}
