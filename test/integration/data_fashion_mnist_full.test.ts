/**
 * The `idx` dataset on the real, full Fashion-MNIST as Debian ships it (dataset-fashion-mnist), against
 * what is known about it independently of our reader: 60,000 / 10,000 images, exactly 6,000 / 1,000 per
 * class, and the demo subset in data/demo being the first 600 (train) and 100 (test) images of each class
 * in file order (data/demo/README.md).
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { openDatasetIndex } from "../../common/data/open_index.js";
import { openDataset } from "../../worker/data/open_dataset.js";

const FULL = "/usr/share/datasets/fashion-mnist";
const DEMO = fileURLToPath(new URL("../../data/demo", import.meta.url));

function requireFull(): void {
  if (!existsSync(FULL)) {
    throw new Error(`${FULL} is missing: apt-get install dataset-fashion-mnist (.ci/run installs it)`);
  }
}

/** The first `perClass` sample indices of every class, in file order, class by class interleaved as found. */
function firstOfEachClass(labels: ArrayLike<number>, perClass: number): number[] {
  const taken = new Array(10).fill(0);
  const out: number[] = [];
  for (let i = 0; i < labels.length; i++) {
    if (taken[labels[i]] < perClass) {
      taken[labels[i]]++;
      out.push(i);
    }
  }
  return out;
}

describe("the full Fashion-MNIST (Debian's dataset-fashion-mnist) as an idx dataset", () => {
  it("has 60,000 / 10,000 images with 6,000 / 1,000 per class", async () => {
    requireFull();
    const index = await openDatasetIndex({ dataset: "idx", dataPath: FULL, imageSize: 28 });
    expect(index.classNames).toEqual(["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    for (const [split, n] of [
      ["train", 60_000],
      ["test", 10_000],
    ] as const) {
      const labels = index.labels(split);
      expect(labels.length).toBe(n);
      const counts = new Array(10).fill(0);
      for (const l of labels) counts[l]++;
      expect(counts).toEqual(new Array(10).fill(n / 10));
    }
  });

  it.each([
    ["train", 600],
    ["test", 100],
  ] as const)(
    "contains the demo subset's %s split as its first %i images of each class",
    async (split, per) => {
      requireFull();
      const opts = { dataset: "idx", imageSize: 28, threads: 0 } as const;
      const full = await openDataset({ ...opts, dataPath: FULL });
      const demo = await openDataset({ ...opts, dataPath: DEMO });
      try {
        const picked = firstOfEachClass(full.labels(split), per);
        expect(picked.length).toBe(10 * per);
        expect(Array.from(demo.labels(split))).toEqual(picked.map((i) => full.labels(split)[i]));
        // Compare pixels in batches of 500 to keep memory small (3×28×28 float32 per image).
        for (let start = 0; start < picked.length; start += 500) {
          const idx = picked.slice(start, start + 500);
          const a = await full.load(split, idx, { augment: false });
          const b = await demo.load(
            split,
            idx.map((_, k) => start + k),
            { augment: false },
          );
          expect(a.length).toBe(idx.length * 3 * 784);
          expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer)), `${split} images ${start}…`).toBe(true);
        }
      } finally {
        await full.close();
        await demo.close();
      }
    },
  );
});
