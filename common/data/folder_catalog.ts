import { join } from "node:path";
import type { FileCatalog, TestTransform } from "./catalog.js";
import { DataError } from "./errors.js";
import { listImagesRecursive, listSubfolders, requireDirectory } from "./image_tree.js";
import type { Split } from "./types.js";

/**
 * `root/train/<class>/…` and `root/test/<class>/…`: classes are the sorted training class folders; a test
 * class folder must also exist in training (labels are matched by name, not by position).
 */
export async function readFolderSplits(
  root: string,
  kind: string,
  testTransform: TestTransform,
): Promise<FileCatalog> {
  await requireDirectory(root, "dataset folder");
  const dirs = { train: join(root, "train"), test: join(root, "test") };
  await requireDirectory(dirs.train, "training folder");
  await requireDirectory(dirs.test, "test folder");
  const classNames = await listSubfolders(dirs.train);
  if (classNames.length === 0) throw new DataError("no class folders found", dirs.train);
  const ids = new Map(classNames.map((c, i) => [c, i] as const));

  const read = async (split: Split): Promise<{ files: string[]; labels: Int32Array }> => {
    const classes = split === "train" ? classNames : await listSubfolders(dirs[split]);
    if (classes.length === 0) throw new DataError("no class folders found", dirs[split]);
    const files: string[] = [];
    const labels: number[] = [];
    for (const cls of classes) {
      const id = ids.get(cls);
      const classDir = join(dirs[split], cls);
      if (id === undefined) {
        throw new DataError(`class folder "${cls}" has no counterpart in ${dirs.train}`, classDir);
      }
      const images = await listImagesRecursive(classDir);
      if (images.length === 0) {
        throw new DataError("empty class: no image files (.jpg, .jpeg, .png, .bmp, .webp, .tif)", classDir);
      }
      for (const rel of images) {
        files.push(join(classDir, rel));
        labels.push(id);
      }
    }
    return { files, labels: Int32Array.from(labels) };
  };
  const train = await read("train");
  const test = await read("test");
  return {
    storage: "files",
    kind,
    classNames,
    testTransform,
    files: { train: train.files, test: test.files },
    labels: { train: train.labels, test: test.labels },
  };
}
