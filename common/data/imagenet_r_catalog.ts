import { stat } from "node:fs/promises";
import { join } from "node:path";
import type { FileCatalog } from "./catalog.js";
import { DataError } from "./errors.js";
import { readFolderSplits } from "./folder_catalog.js";
import { listImagesRecursive, listSubfolders, requireDirectory } from "./image_tree.js";
import type { DataOptions } from "./options.js";
import { MANIFEST_FORMAT, type SplitManifest, settleManifest } from "./split_manifest.js";
import { trainTestSplit } from "./train_test_split.js";

const TEST_FRACTION = 0.2;

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/**
 * ImageNet-R either as the reference leaves it (`train/` and `test/` class folders) or as the raw
 * 200-class tree (class folders under the root, or under `imagenet-r/` in it). The raw tree is split
 * 80/20 over all images, exactly as `sklearn.model_selection.train_test_split(images, test_size=0.2,
 * random_state=splitSeed)` does over ImageFolder's order (24,000 / 6,000 for the full set); the split is
 * recorded in a manifest at `manifestPath` (written only when `writeManifest`: by the coordinator, not by
 * workers, which recompute the same split or read a shared manifest). The user's files are never moved.
 */
export async function readImagenetRCatalog(opts: DataOptions, writeManifest: boolean): Promise<FileCatalog> {
  const root = opts.dataPath;
  await requireDirectory(root, "dataset folder");
  if ((await isDirectory(join(root, "train"))) && (await isDirectory(join(root, "test")))) {
    return readFolderSplits(root, "imagenet_r", "resize_center_crop");
  }
  let treeRoot = root;
  let classes = await listSubfolders(root);
  if (classes.length === 0 || (classes.length === 1 && classes[0] === "imagenet-r")) {
    treeRoot = join(root, "imagenet-r");
    classes = (await isDirectory(treeRoot)) ? await listSubfolders(treeRoot) : [];
  }
  if (classes.length === 0) {
    throw new DataError("no ImageNet-R data: expected train/ and test/ folders, or class folders", root);
  }
  const files: string[] = [];
  for (const cls of classes) {
    const images = await listImagesRecursive(join(treeRoot, cls));
    if (images.length === 0) throw new DataError("empty class: no image files", join(treeRoot, cls));
    for (const rel of images) files.push(`${cls}/${rel}`);
  }
  const seed = opts.splitSeed ?? 0;
  const split = trainTestSplit(files.length, TEST_FRACTION, seed);
  const computed: SplitManifest = {
    format: MANIFEST_FORMAT,
    dataset: "imagenet_r",
    root: treeRoot,
    seed,
    test_fraction: TEST_FRACTION,
    method: "sklearn train_test_split(test_size=0.2, random_state=seed) over ImageFolder order",
    classes,
    train: split.train.map((i) => files[i]),
    test: split.test.map((i) => files[i]),
  };
  const manifest = await settleManifest(opts.manifestPath, root, computed, writeManifest);
  // Keep ImageFolder order (class, then path) whatever order the manifest lists.
  const order = new Map(files.map((f, i) => [f, i] as const));
  const ids = new Map(classes.map((c, i) => [c, i] as const));
  const build = (rels: readonly string[]) => {
    const sorted = [...rels].sort((a, b) => (order.get(a) as number) - (order.get(b) as number));
    return {
      files: sorted.map((r) => join(treeRoot, r)),
      labels: Int32Array.from(sorted, (r) => ids.get(r.slice(0, r.indexOf("/"))) as number),
    };
  };
  const train = build(manifest.train);
  const test = build(manifest.test);
  return {
    storage: "files",
    kind: "imagenet_r",
    classNames: classes,
    testTransform: "resize_center_crop",
    files: { train: train.files, test: test.files },
    labels: { train: train.labels, test: test.labels },
  };
}
