/**
 * What the coordinator knows about a dataset: class names and per-sample labels, never pixels.
 * Workers open the same dataset (worker/data) and load pixels by sample index.
 */
export type Split = "train" | "test";

export interface DatasetIndex {
  /** Dataset kind as resolved from the config (`cifar100`, `imagenet_r`, `domainnet`, `folder`, `idx`). */
  readonly kind: string;
  /** Sorted distinct labels of the dataset (folder names sorted for folders; "0".."n-1" for numeric labels). Label id = index here. */
  readonly classNames: readonly string[];
  /** Label id of every sample of a split, in file order (record order, sorted file names, list order). */
  labels(split: Split): Int32Array;
}

/** Key of the counter-based augmentation RNG: a sample gets the same crop and flip on every worker. */
export interface AugmentKey {
  readonly seed: number;
  readonly task: number;
  /** Training epoch (0-based); covariance passes use -1 (before training) and -2 (after training). */
  readonly epoch: number;
}
