import type { Catalog } from "./catalog.js";
import { openCatalog } from "./open_catalog.js";
import type { DataOptions } from "./options.js";
import type { DatasetIndex, Split } from "./types.js";

/** The labels-only view of a catalog; `labels()` hands out copies so callers cannot corrupt it. */
export function catalogIndex(catalog: Catalog): DatasetIndex {
  return {
    kind: catalog.kind,
    classNames: catalog.classNames,
    labels: (split: Split) => catalog.labels[split].slice(),
  };
}

/**
 * Class names and labels of a dataset, without decoding any image (what the coordinator needs). Writes
 * the split manifest of a raw ImageNet-R tree to `manifestPath` when it is not there yet.
 */
export async function openDatasetIndex(opts: DataOptions): Promise<DatasetIndex> {
  return catalogIndex(await openCatalog(opts, { withPixels: false, writeManifest: true }));
}
