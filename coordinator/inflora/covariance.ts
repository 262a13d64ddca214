/**
 * The input covariance of every block, C = (1/N) Σ x xᵀ over all tokens of a task's training images
 * (paper Eq. 6): the workers' per-shard float32 sums reduced in float64 in shard order, then normalised
 * and symmetrised (docs/design.md#covariance).
 */
import type { CovarianceResult } from "../../common/protocol.js";
import { type Mat, mat } from "../linalg/matrix.js";
import { sumInOrder } from "../reduce.js";

export class CovarianceSum {
  private readonly sums: Float64Array[];
  private tokens = 0;

  constructor(
    private readonly depth: number,
    private readonly D: number,
  ) {
    this.sums = Array.from({ length: depth }, () => new Float64Array(D * D));
  }

  /**
   * Adds one round of shard results (sorted by shard index) straight into the running sums: rounds, which
   * depend on the number of workers, never change the order of the float64 additions.
   */
  add(results: readonly CovarianceResult[]): void {
    const parts = results.map((r) => r.sums);
    for (let i = 0; i < this.depth; i++) sumInOrder(parts, i, this.sums[i]);
    for (const r of results) this.tokens += r.tokens;
  }

  /** C per block; the sums are consumed. */
  finish(): Mat[] {
    const { D, tokens } = this;
    return this.sums.map((s) => {
      for (let k = 0; k < s.length; k++) s[k] /= tokens;
      symmetrise(s, D);
      return mat(D, D, s);
    });
  }
}

/** Float32 partial sums are symmetric only up to rounding: both triangles take their mean. */
function symmetrise(s: Float64Array, D: number): void {
  for (let r = 0; r < D; r++) {
    for (let c = r + 1; c < D; c++) {
      const v = (s[r * D + c] + s[c * D + r]) / 2;
      s[r * D + c] = v;
      s[c * D + r] = v;
    }
  }
}
