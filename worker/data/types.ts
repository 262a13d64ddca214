import type { AugmentKey, DatasetIndex, Split } from "../../common/data/types.js";

export interface LoadOptions {
  /** true: the dataset's training transform (random crop/flip keyed by `key`); false: its test transform. */
  readonly augment: boolean;
  /** Required when `augment` is true. */
  readonly key?: AugmentKey;
}

/** A dataset a worker can read pixels from. */
export interface ImageDataset extends DatasetIndex {
  /** Side of the square images `load` returns. */
  readonly imageSize: number;
  /**
   * Images of the given samples of a split as one float32 array, n × 3 × S × S (CHW per image, like
   * torchvision's ToTensor: values in [0, 1], then the optional mean/std normalisation).
   */
  load(split: Split, indices: readonly number[], options: LoadOptions): Promise<Float32Array>;
  /** Releases worker threads and file handles. */
  close(): Promise<void>;
}
