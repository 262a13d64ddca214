/**
 * Classifier alignment's class statistics (docs/design.md#alignment): per class of a task, the mean μ_c and
 * the unbiased covariance Σ_c of the final-norm class-token features of all its training images. The
 * workers send each micro-shard's float32 features; the sums here run in float64, shard after shard in
 * index order, so the statistics are the same numbers for any number of workers.
 */
import type { ClassStatistics } from "./alignment.js";

/**
 * The ridge the reference adds to every covariance: `torch.eye(D) * 1e-4` is a float32 tensor, so the
 * value added to the float64 covariance is 1e-4 rounded to float32.
 */
export const COVARIANCE_RIDGE = Math.fround(1e-4);

/** Running float64 sums of one task's classes: counts, Σ f and the upper triangle of Σ f fᵀ. */
export class ClassStatsSum {
  private readonly counts: number[];
  private readonly sums: Float64Array[];
  private readonly outer: Float64Array[];

  /** Classes `classStart` … `classStart + classes − 1` (labels = positions in the class order). */
  constructor(
    private readonly classStart: number,
    private readonly classes: number,
    private readonly D: number,
  ) {
    this.counts = new Array(classes).fill(0);
    this.sums = Array.from({ length: classes }, () => new Float64Array(D));
    this.outer = Array.from({ length: classes }, () => new Float64Array(D * D));
  }

  /** Adds one shard's features [n, D] (row k has label labels[k]); shards must come in index order. */
  add(features: Float32Array, labels: Int32Array): void {
    const { D } = this;
    if (features.length !== labels.length * D) {
      throw new Error(
        `class statistics: ${features.length} feature values for ${labels.length} samples of width ${D}`,
      );
    }
    for (let k = 0; k < labels.length; k++) {
      const c = labels[k] - this.classStart;
      if (c < 0 || c >= this.classes)
        throw new Error(`class statistics: label ${labels[k]} is not a class of this task`);
      const f = features.subarray(k * D, (k + 1) * D);
      const s = this.sums[c];
      const o = this.outer[c];
      this.counts[c]++;
      // A product of two float32 values is exact in float64: only the order of the additions matters.
      for (let r = 0; r < D; r++) {
        const fr = f[r];
        s[r] += fr;
        const row = r * D;
        for (let q = r; q < D; q++) o[row + q] += fr * f[q];
      }
    }
  }

  /**
   * μ_c (rounded to float32, as the reference's float32 feature mean) and Σ_c = (Σ f fᵀ − n μ μᵀ)/(n − 1)
   * in float64 with the full-precision mean, plus the ridge, rounded to float32. The sums are consumed.
   */
  finish(): ClassStatistics {
    const { D, classes } = this;
    const means = new Float64Array(classes * D);
    const covs = new Float32Array(classes * D * D);
    for (let c = 0; c < classes; c++) {
      const n = this.counts[c];
      if (n < 2) {
        throw new Error(
          `class statistics: class ${this.classStart + c} has ${n} training image${n === 1 ? "" : "s"}; its covariance needs at least 2`,
        );
      }
      const s = this.sums[c];
      const o = this.outer[c];
      const mu = s.map((x) => x / n);
      for (let r = 0; r < D; r++) means[c * D + r] = Math.fround(mu[r]);
      const base = c * D * D;
      for (let r = 0; r < D; r++) {
        for (let q = r; q < D; q++) {
          const v = (o[r * D + q] - n * mu[r] * mu[q]) / (n - 1) + (r === q ? COVARIANCE_RIDGE : 0);
          covs[base + r * D + q] = v;
          covs[base + q * D + r] = v;
        }
      }
      this.outer[c] = new Float64Array(0);
    }
    return { D, classes, means, covs };
  }
}

/** The statistics of `earlier` classes followed by `added` ones (rows in the run's class order). */
export function appendStatistics(
  earlier: ClassStatistics | undefined,
  added: ClassStatistics,
): ClassStatistics {
  if (!earlier) return added;
  if (earlier.D !== added.D) throw new Error(`class statistics: width ${added.D} after ${earlier.D}`);
  const { D } = added;
  const classes = earlier.classes + added.classes;
  const means = new Float64Array(classes * D);
  means.set(earlier.means);
  means.set(added.means, earlier.means.length);
  const covs = new Float32Array(classes * D * D);
  covs.set(earlier.covs);
  covs.set(added.covs, earlier.covs.length);
  return { D, classes, means, covs };
}
