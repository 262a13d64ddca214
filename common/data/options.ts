/** How to open a dataset; built by the config loader from the run config. */
export interface DataOptions {
  /** `cifar100` | `imagenet_r` | `ImageNet_R` | `domainnet` | `folder` | `idx` (case-insensitive). */
  readonly dataset: string;
  /** Absolute path of the dataset (the config loader resolves relative paths). */
  readonly dataPath: string;
  /** S, the side of the square images the model takes (224 for ViT-B/16). */
  readonly imageSize: number;
  /** Optional per-channel normalisation after ToTensor: (x − mean) / std. Default: none. */
  readonly mean?: readonly number[];
  readonly std?: readonly number[];
  /** `error` (default): an unreadable image fails the load; `skip`: warn, count it, return zeros for it. */
  readonly onBadImage?: "error" | "skip";
  /** Seed of the deterministic 80/20 split of a raw ImageNet-R tree (default 0). */
  readonly splitSeed?: number;
  /** Where the split manifest of a raw ImageNet-R tree is written or read (the run dir, never the dataset). */
  readonly manifestPath?: string;
  /** DomainNet domains to use (default: all six, in the standard order). */
  readonly domains?: readonly string[];
  /** Decode/augment threads of the loader; 0 runs everything on the calling thread. Default: all cores. */
  readonly threads?: number;
  /** Receives warnings (skipped images, …); default console.warn. */
  readonly warn?: (message: string) => void;
}
