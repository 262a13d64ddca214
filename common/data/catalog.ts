import type { Split } from "./types.js";

/** Which test transform a dataset uses (torchvision semantics, S = image size). */
export type TestTransform =
  /** `Resize(S)`: CIFAR-100 and IDX, as the reference does for CIFAR. */
  | "resize"
  /** `Resize(round(S·256/224))` + `CenterCrop(S)`: ImageNet-R, DomainNet, folders. */
  | "resize_center_crop";

interface CatalogBase {
  readonly kind: string;
  readonly classNames: readonly string[];
  readonly labels: Readonly<Record<Split, Int32Array>>;
  readonly testTransform: TestTransform;
}

/** A dataset of image files, one absolute path per sample. */
export interface FileCatalog extends CatalogBase {
  readonly storage: "files";
  readonly files: Readonly<Record<Split, readonly string[]>>;
}

/** Raw pixels of one split held in memory: n images, CHW planes of uint8. */
export interface PixelArray {
  /** n × channels × height × width bytes; a SharedArrayBuffer so worker threads read it without copies. */
  readonly data: Uint8Array;
  readonly channels: 1 | 3;
  readonly height: number;
  readonly width: number;
}

/** A dataset decoded once into memory (CIFAR, IDX). `pixels` is absent when only labels were read. */
export interface ArrayCatalog extends CatalogBase {
  readonly storage: "arrays";
  readonly pixels?: Readonly<Record<Split, PixelArray>>;
}

export type Catalog = FileCatalog | ArrayCatalog;
