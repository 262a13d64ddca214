import { stat } from "node:fs/promises";
import { join } from "node:path";
import type { ArrayCatalog } from "./catalog.js";
import { type CifarRecords, readCifarBinary } from "./cifar_binary.js";
import { readCifarPickle } from "./cifar_pickle.js";
import { DataError } from "./errors.js";
import { requireDirectory } from "./image_tree.js";
import { numericClasses } from "./labels.js";

export interface CifarFiles {
  readonly format: "python" | "binary";
  readonly train: string;
  readonly test: string;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/**
 * Finds CIFAR-100 under `dataPath`: torchvision's pickles (`train`, `test`) or the binary records
 * (`train.bin`, `test.bin`), in the folder itself or in its `cifar-100-python/` / `cifar-100-binary/`.
 */
export async function locateCifar(dataPath: string): Promise<CifarFiles> {
  await requireDirectory(dataPath, "dataset folder");
  for (const dir of [dataPath, join(dataPath, "cifar-100-python"), join(dataPath, "cifar-100-binary")]) {
    const py = { train: join(dir, "train"), test: join(dir, "test") };
    const bin = { train: join(dir, "train.bin"), test: join(dir, "test.bin") };
    const [pyTrain, pyTest, binTrain, binTest] = await Promise.all(
      [py.train, py.test, bin.train, bin.test].map(isFile),
    );
    if (pyTrain && pyTest) return { format: "python", ...py };
    if (binTrain && binTest) return { format: "binary", ...bin };
    if (binTrain !== binTest)
      throw new DataError("CIFAR-100 binary file is missing", binTrain ? bin.test : bin.train);
    if (pyTrain !== pyTest) throw new DataError("CIFAR-100 pickle is missing", pyTrain ? py.test : py.train);
  }
  throw new DataError(
    "no CIFAR-100 files: expected train/test (torchvision's cifar-100-python) or train.bin/test.bin, here or in cifar-100-python/ or cifar-100-binary/",
    dataPath,
  );
}

/** CIFAR-100 by its fine labels; any set of fine labels (classes = the sorted distinct training labels). */
export async function readCifarCatalog(dataPath: string, withPixels: boolean): Promise<ArrayCatalog> {
  const files = await locateCifar(dataPath);
  const read = (file: string): Promise<CifarRecords> =>
    files.format === "binary" ? readCifarBinary(file, withPixels) : readCifarPickle(file, withPixels);
  // Both read at once, but a failure is reported in file order (train first), never by which read lost a race.
  const settled = await Promise.allSettled([read(files.train), read(files.test)]);
  const failed = settled.find((r) => r.status === "rejected");
  if (failed) throw failed.reason;
  const [train, test] = settled.map(
    (r) => (r as PromiseFulfilledResult<Awaited<ReturnType<typeof read>>>).value,
  );
  const {
    classNames,
    train: trainLabels,
    test: testLabels,
  } = numericClasses(train.fine, test.fine, files.train, files.test);
  const pixelsOf = (r: CifarRecords) => ({
    data: r.pixels as Uint8Array,
    channels: 3 as const,
    height: 32,
    width: 32,
  });
  return {
    storage: "arrays",
    kind: "cifar100",
    classNames,
    testTransform: "resize",
    labels: { train: trainLabels, test: testLabels },
    pixels: withPixels ? { train: pixelsOf(train), test: pixelsOf(test) } : undefined,
  };
}
