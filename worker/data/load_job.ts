import type { TestTransform } from "../../common/data/catalog.js";
import type { AugmentKey, Split } from "../../common/data/types.js";

/** One piece of a `load()`: samples of one split, with their files when the dataset is on disk. */
export interface LoadJob {
  readonly split: Split;
  readonly indices: readonly number[];
  /** Absolute file of every index (file datasets only). */
  readonly paths?: readonly string[];
  /** Present for the training transform. */
  readonly augment?: AugmentKey;
}

/** An image that could not be read; with `onBadImage: "skip"` its slot holds zeros. */
export interface BadImage {
  readonly index: number;
  readonly file: string;
  readonly message: string;
}

/** What every thread that runs jobs knows about the dataset (sent once, as worker data). */
export interface JobContextData {
  readonly imageSize: number;
  readonly testTransform: TestTransform;
  readonly mean?: readonly number[];
  readonly std?: readonly number[];
  readonly onBadImage: "error" | "skip";
  /** In-memory pixels (shared memory), for CIFAR and IDX. */
  readonly arrays?: Readonly<
    Record<Split, { data: Uint8Array; channels: 1 | 3; height: number; width: number }>
  >;
}

/** A pool worker's answer when it is not a bare Float32Array (the common case). */
export type JobReply =
  | { readonly data: Float32Array; readonly bad: readonly BadImage[] }
  | { readonly dataError: { readonly detail: string; readonly file?: string } };
