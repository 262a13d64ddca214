import { DataError } from "./errors.js";

export type DatasetKind = "cifar100" | "imagenet_r" | "domainnet" | "folder" | "idx";

const KINDS: Readonly<Record<string, DatasetKind>> = {
  cifar100: "cifar100",
  imagenet_r: "imagenet_r",
  domainnet: "domainnet",
  folder: "folder",
  idx: "idx",
};

/** The config's `dataset` value, case-insensitive (the reference spells ImageNet-R `ImageNet_R`). */
export function datasetKind(name: string): DatasetKind {
  const kind = KINDS[name.toLowerCase()];
  if (kind === undefined) {
    throw new DataError(
      `unknown dataset "${name}" (known: cifar100, imagenet_r, domainnet, folder, idx)`,
      "dataset",
    );
  }
  return kind;
}
