import { isAbsolute } from "node:path";
import type { Catalog } from "./catalog.js";
import { readCifarCatalog } from "./cifar_catalog.js";
import { datasetKind } from "./dataset_kind.js";
import { readDomainNetCatalog } from "./domainnet_catalog.js";
import { DataError } from "./errors.js";
import { readFolderSplits } from "./folder_catalog.js";
import { readIdxCatalog } from "./idx_catalog.js";
import { readImagenetRCatalog } from "./imagenet_r_catalog.js";
import type { DataOptions } from "./options.js";

/** What opening a dataset may do besides reading it. */
export interface CatalogMode {
  /** Decode in-memory datasets (CIFAR, IDX) into shared memory, for a loader. */
  readonly withPixels: boolean;
  /** Write the split manifest of a raw ImageNet-R tree if it does not exist yet (the coordinator). */
  readonly writeManifest: boolean;
}

/**
 * Reads what a dataset holds: class names, labels, and either file paths or the in-memory pixels of
 * CIFAR/IDX. Never writes into the dataset folder.
 */
export async function openCatalog(opts: DataOptions, mode: CatalogMode): Promise<Catalog> {
  const { withPixels } = mode;
  if (!isAbsolute(opts.dataPath))
    throw new DataError(`data_path must be absolute, got "${opts.dataPath}"`, "data_path");
  const kind = datasetKind(opts.dataset);
  switch (kind) {
    case "cifar100":
      return readCifarCatalog(opts.dataPath, withPixels);
    case "idx":
      return readIdxCatalog(opts.dataPath, withPixels);
    case "folder":
      return readFolderSplits(opts.dataPath, "folder", "resize_center_crop");
    case "imagenet_r":
      return readImagenetRCatalog(opts, mode.writeManifest);
    case "domainnet":
      return readDomainNetCatalog(opts);
  }
}
