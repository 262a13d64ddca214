/**
 * The downloadable ImageNet-21k checkpoints of `inflora weights fetch`. A module of its own so that the
 * command line can list them without loading the weights tools.
 */
export interface FetchPreset {
  /** Path under the base URL. */
  readonly path: string;
  /**
   * SHA-256 of the file, lowercase hex; null where it is not known. Google publishes no digests for these
   * files and the machine that wrote this table has no internet access, so none has been verified yet:
   * pass `--sha256 HEX` from a source you trust (or `--allow-unverified` to accept and record the digest).
   */
  readonly sha256: string | null;
  readonly description: string;
}

export const FETCH_PRESETS: Readonly<Record<string, FetchPreset>> = {
  vit_base_patch16_224_in21k: {
    path: "augreg/B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0.npz",
    sha256: null,
    description: "ViT-B/16, ImageNet-21k, augreg (the reference's backbone)",
  },
  vit_small_patch16_224_in21k: {
    path: "augreg/S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0.npz",
    sha256: null,
    description: "ViT-S/16, ImageNet-21k, augreg",
  },
  vit_tiny_patch16_224_in21k: {
    path: "augreg/Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0.npz",
    sha256: null,
    description: "ViT-Ti/16, ImageNet-21k, augreg",
  },
};
