import { readFile, stat } from "node:fs/promises";
import { isAbsolute, join } from "node:path";
import type { FileCatalog } from "./catalog.js";
import { DataError } from "./errors.js";
import { requireDirectory } from "./image_tree.js";
import { numericClasses } from "./labels.js";
import type { DataOptions } from "./options.js";
import type { Split } from "./types.js";

export const DOMAINNET_DOMAINS = ["clipart", "infograph", "painting", "quickdraw", "real", "sketch"] as const;
export const DOMAINNET_CLASSES = 345;

/**
 * DomainNet from its own lists `{domain}_{train,test}.txt` (lines `domain/class/file.jpg label`, paths
 * relative to the root), domains concatenated in the given order. Labels are the lists' numbers.
 */
export async function readDomainNetCatalog(opts: DataOptions): Promise<FileCatalog> {
  const root = opts.dataPath;
  await requireDirectory(root, "dataset folder");
  const domains = opts.domains ?? DOMAINNET_DOMAINS;
  if (domains.length === 0) throw new DataError("no DomainNet domains selected", "domains");
  const classOfLabel = new Map<number, string>();
  const labelOfClass = new Map<string, number>();

  const readSplit = async (split: Split) => {
    const files: string[] = [];
    const values: number[] = [];
    let firstList = "";
    for (const domain of domains) {
      const list = join(root, `${domain}_${split}.txt`);
      firstList ||= list;
      let text: string;
      try {
        text = await readFile(list, "utf8");
      } catch {
        throw new DataError(`DomainNet list for domain "${domain}" is missing`, list);
      }
      const lines = text.split(/\r?\n/);
      lines.forEach((raw, i) => {
        const line = raw.trim();
        if (line === "") return;
        const where = `${list}:${i + 1}`;
        const fields = line.split(/\s+/);
        if (fields.length !== 2) throw new DataError(`expected "path label", got "${line}"`, where);
        const [path, labelText] = fields;
        if (!/^\d+$/.test(labelText)) throw new DataError(`label "${labelText}" is not a number`, where);
        const label = Number(labelText);
        if (label >= DOMAINNET_CLASSES) {
          throw new DataError(
            `label out of range: ${label} (DomainNet has ${DOMAINNET_CLASSES} classes)`,
            where,
          );
        }
        const parts = path.split("/");
        if (isAbsolute(path) || parts.includes("..") || parts.length < 3) {
          throw new DataError(`path "${path}" is not of the form domain/class/file`, where);
        }
        const cls = parts[1];
        const known = labelOfClass.get(cls);
        if (known !== undefined && known !== label) {
          throw new DataError(`class "${cls}" has label ${label} here but ${known} before`, where);
        }
        const knownClass = classOfLabel.get(label);
        if (knownClass !== undefined && knownClass !== cls) {
          throw new DataError(`label ${label} names class "${cls}" here but "${knownClass}" before`, where);
        }
        labelOfClass.set(cls, label);
        classOfLabel.set(label, cls);
        files.push(join(root, path));
        values.push(label);
      });
    }
    if (files.length === 0) throw new DataError(`the ${split} lists are empty`, firstList);
    // Catch a wrong root early: the first image must exist (every file is checked when it is loaded).
    try {
      await stat(files[0]);
    } catch {
      throw new DataError(
        `image listed in ${firstList} does not exist (is data_path the DomainNet root?)`,
        files[0],
      );
    }
    return { files, values, list: firstList };
  };
  const train = await readSplit("train");
  const test = await readSplit("test");
  const classes = numericClasses(train.values, test.values, train.list, test.list);
  return {
    storage: "files",
    kind: "domainnet",
    classNames: classes.classNames,
    testTransform: "resize_center_crop",
    files: { train: train.files, test: test.files },
    labels: { train: classes.train, test: classes.test },
  };
}
