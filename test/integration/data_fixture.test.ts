import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDatasetIndex } from "../../common/data/open_index.js";
import { type LoaderDataset, openDataset } from "../../worker/data/open_dataset.js";

const REF = fileURLToPath(new URL("../fixtures/reference/", import.meta.url));
const BIN = join(REF, "cifar_bin");
const FOLDER = join(REF, "folder");

/** Every file under a folder with its hash and mtime, to prove nothing was written. */
function snapshot(dir: string): string {
  const lines: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const s = statSync(p);
      if (s.isDirectory()) walk(p);
      else
        lines.push(
          `${p} ${s.size} ${s.mtimeMs} ${createHash("sha256").update(readFileSync(p)).digest("hex")}`,
        );
    }
    lines.push(`${d}/ ${readdirSync(d).length}`);
  };
  walk(dir);
  return lines.join("\n");
}

/** The records of a CIFAR binary file, read independently of the code under test. */
function records(split: "train" | "test") {
  const bytes = readFileSync(join(BIN, `${split}.bin`));
  const n = bytes.length / 3074;
  return Array.from({ length: n }, (_, i) => ({
    fine: bytes[i * 3074 + 1],
    pixels: bytes.subarray(i * 3074 + 2, (i + 1) * 3074),
  }));
}

describe("the shared reference fixture", () => {
  let before: string;
  let bin: LoaderDataset;
  let folder: LoaderDataset;

  beforeAll(async () => {
    before = snapshot(REF);
    bin = await openDataset({ dataset: "cifar100", dataPath: BIN, imageSize: 32, threads: 2 });
    folder = await openDataset({ dataset: "folder", dataPath: FOLDER, imageSize: 32, threads: 2 });
  });
  afterAll(async () => {
    await bin?.close();
    await folder?.close();
  });

  it("indexes labels without pixels: 20 classes, 800/200 samples, the fine labels in record order", async () => {
    const index = await openDatasetIndex({ dataset: "cifar100", dataPath: BIN, imageSize: 32 });
    expect(index.kind).toBe("cifar100");
    expect(index.classNames).toEqual(Array.from({ length: 20 }, (_, i) => String(i)));
    for (const split of ["train", "test"] as const) {
      expect(Array.from(index.labels(split))).toEqual(records(split).map((r) => r.fine));
    }
    const f = await openDatasetIndex({ dataset: "folder", dataPath: FOLDER, imageSize: 32 });
    expect(f.classNames).toEqual(Array.from({ length: 20 }, (_, i) => `class_${String(i).padStart(2, "0")}`));
    expect(f.labels("train").length).toBe(800);
  });

  for (const split of ["train", "test"] as const) {
    it(`gives pixel/255 for every ${split} sample, identical from the binary records and the PNG folder`, async () => {
      const recs = records(split);
      const all = recs.map((_, i) => i);
      const a = await bin.load(split, all, { augment: false });
      const b = await folder.load(split, all, { augment: false });
      const F = 3 * 32 * 32;
      expect(a.length).toBe(recs.length * F);
      // Exactly pixel/255 (float32 division, as torchvision's ToTensor); counted, then asserted once.
      let wrong = 0;
      recs.forEach((r, i) => {
        for (let j = 0; j < F; j++) if (a[i * F + j] !== Math.fround(r.pixels[j] / 255)) wrong++;
      });
      expect(wrong).toBe(0);
      // Folder sample k is the PNG of record number = its file name; labels agree too.
      const folderLabels = Array.from(folder.labels(split));
      const index = await openDatasetIndex({ dataset: "folder", dataPath: FOLDER, imageSize: 32 });
      expect(Array.from(index.labels(split))).toEqual(folderLabels);
      const names = listFolder(split);
      expect(names.length).toBe(recs.length);
      const mismatches: string[] = [];
      names.forEach((file, k) => {
        const rec = Number(basename(file, ".png"));
        if (folderLabels[k] !== recs[rec].fine) mismatches.push(`${file}: label`);
        for (let j = 0; j < F; j++) {
          if (b[k * F + j] !== a[rec * F + j]) {
            mismatches.push(`${file}: pixels differ from record ${rec}`);
            break;
          }
        }
      });
      expect(mismatches).toEqual([]);
    });
  }

  it("left the fixture folder untouched", () => {
    expect(snapshot(REF)).toBe(before);
  });
});

/** The folder's files in the order the dataset lists them: class folders sorted, file names sorted. */
function listFolder(split: string): string[] {
  const root = join(FOLDER, split);
  return readdirSync(root)
    .sort()
    .flatMap((c) =>
      readdirSync(join(root, c))
        .sort()
        .map((f) => join(root, c, f)),
    );
}
