import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import type { DataOptions } from "../../common/data/options.js";
import type { AugmentKey } from "../../common/data/types.js";
import { openDataset } from "../../worker/data/open_dataset.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const REF = join(ROOT, "test/fixtures/reference");
const run = promisify(execFile);

const sha = (x: Float32Array) =>
  createHash("sha256")
    .update(new Uint8Array(x.buffer, x.byteOffset, x.byteLength))
    .digest("hex");

async function loadWith(opts: DataOptions, indices: number[], key?: AugmentKey): Promise<Float32Array> {
  const ds = await openDataset(opts);
  try {
    return await ds.load("train", indices, { augment: key !== undefined, key });
  } finally {
    await ds.close();
  }
}

const key: AugmentKey = { seed: 3, task: 1, epoch: 2 };
const keys = [key, undefined];
const indices = [0, 5, 17, 42, 99, 123, 500, 799];
const cases: [string, DataOptions][] = [
  // 8 images of 224² are enough work to go to the thread pool even though CIFAR is in memory
  ["CIFAR records, 32 → 224", { dataset: "cifar100", dataPath: join(REF, "cifar_bin"), imageSize: 224 }],
  ["PNG folder, 32 → 48", { dataset: "folder", dataPath: join(REF, "folder"), imageSize: 48 }],
];

/** The same loads done by another process (`npx tsx` on a helper script), started once, up front. */
const childHashes: Promise<string[][]> = (async () => {
  const requests = cases.map(([, opts]) => ({
    opts: { ...opts, threads: 1 },
    split: "train",
    indices,
    loads: keys.map((k) => ({ augment: k !== undefined, key: k })),
  }));
  const script = join(ROOT, "test/integration/data_load_child.ts");
  const { stdout } = await run("npx", ["tsx", script, JSON.stringify(requests)], { cwd: ROOT });
  const lines = stdout.trim().split("\n");
  return cases.map((_, i) => lines.slice(i * keys.length, (i + 1) * keys.length));
})();
childHashes.catch(() => {}); // reported by the test that awaits it

describe.each(cases.map((c, i) => [...c, i] as const))(
  "%s: a sample's tensor does not depend on who loads it",
  (_name, base, caseIndex) => {
    it("is the same on the main thread, in worker threads and in another process", async () => {
      for (const [i, k] of keys.entries()) {
        const main = sha(await loadWith({ ...base, threads: 0 }, indices, k));
        expect(sha(await loadWith({ ...base, threads: 2 }, indices, k))).toBe(main);
        expect((await childHashes)[caseIndex][i]).toBe(main);
      }
    });

    it("depends on the sample index, not its position in the batch; changes with the epoch", async () => {
      const S = base.imageSize;
      const F = 3 * S * S;
      const batch = await loadWith({ ...base, threads: 2 }, indices, key);
      const alone = await loadWith({ ...base, threads: 0 }, [indices[3]], key);
      expect(sha(batch.subarray(3 * F, 4 * F))).toBe(sha(alone));
      const other = await loadWith({ ...base, threads: 0 }, indices, { ...key, epoch: 3 });
      let differing = 0;
      for (let i = 0; i < indices.length; i++) {
        if (sha(batch.subarray(i * F, (i + 1) * F)) !== sha(other.subarray(i * F, (i + 1) * F))) differing++;
      }
      expect(differing).toBeGreaterThanOrEqual(indices.length - 1);
    });
  },
);

describe("prefetch", () => {
  it("hands the prefetched batch to the matching load", async () => {
    const ds = await openDataset({
      dataset: "folder",
      dataPath: join(REF, "folder"),
      imageSize: 32,
      threads: 2,
    });
    try {
      ds.prefetch("train", indices, { augment: true, key });
      const a = await ds.load("train", indices, { augment: true, key });
      const b = await ds.load("train", indices, { augment: true, key });
      expect(sha(a)).toBe(sha(b));
      expect(a).not.toBe(b);
    } finally {
      await ds.close();
    }
  });
});
