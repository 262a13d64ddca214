/**
 * The demo's two disjoint halves of the embedded Fashion-MNIST training images: the first half of every
 * class pretrains the backbone, the second half is the continual-learning stream. Both halves keep the
 * full test split. Each half is written as IDX files, so the ordinary `idx` dataset reads it.
 */
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { writeFileAtomic } from "../common/atomic_write.js";
import { readIdx } from "../common/data/idx_catalog.js";

export interface DemoSplit {
  /** IDX folder with the pretraining half of the training images (and the whole test split). */
  readonly pretrainDir: string;
  /** IDX folder with the continual-learning half (and the whole test split). */
  readonly continualDir: string;
  readonly pretrainCount: number;
  readonly continualCount: number;
  /** SHA-256 over the source IDX files: a changed dataset invalidates the cached backbone. */
  readonly sourceSha256: string;
}

const FILES = {
  trainImages: "train-images-idx3-ubyte",
  trainLabels: "train-labels-idx1-ubyte",
  testImages: "t10k-images-idx3-ubyte",
  testLabels: "t10k-labels-idx1-ubyte",
} as const;

/** IDX bytes: magic (0, 0, type 0x08 = unsigned byte, rank), big-endian dimensions, then the values. */
export function encodeIdx(dims: readonly number[], values: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + values.length);
  const view = new DataView(out.buffer);
  out[2] = 0x08;
  out[3] = dims.length;
  dims.forEach((d, i) => {
    view.setUint32(4 + 4 * i, d, false);
  });
  out.set(values, 4 + 4 * dims.length);
  return out;
}

async function findFile(dir: string, base: string): Promise<string> {
  const names = await readdir(dir);
  for (const candidate of [base, `${base}.gz`])
    if (names.includes(candidate)) return path.join(dir, candidate);
  throw new Error(`${dir}: ${base}[.gz] is missing`);
}

/** Positions of the first (or second) half of every class, in file order. */
export function halfOfEachClass(labels: Uint8Array, which: "first" | "second"): number[] {
  const perClass = new Map<number, number[]>();
  labels.forEach((l, i) => {
    const list = perClass.get(l) ?? [];
    list.push(i);
    perClass.set(l, list);
  });
  const keep = new Set<number>();
  for (const list of perClass.values()) {
    const cut = Math.floor(list.length / 2);
    for (const i of which === "first" ? list.slice(0, cut) : list.slice(cut)) keep.add(i);
  }
  return [...keep].sort((a, b) => a - b);
}

/** Writes both halves under `dir` (rewritten on every call: a few MB, well under a second). */
export async function splitDemoData(source: string, dir: string): Promise<DemoSplit> {
  const paths = {
    trainImages: await findFile(source, FILES.trainImages),
    trainLabels: await findFile(source, FILES.trainLabels),
    testImages: await findFile(source, FILES.testImages),
    testLabels: await findFile(source, FILES.testLabels),
  };
  const hash = createHash("sha256");
  for (const file of Object.values(paths)) hash.update(await readFile(file));
  const images = await readIdx(paths.trainImages, 3);
  const labels = await readIdx(paths.trainLabels, 1);
  const testImages = await readIdx(paths.testImages, 3);
  const testLabels = await readIdx(paths.testLabels, 1);
  const [, h, w] = images.dims;
  const pixels = h * w;
  const write = async (name: string, positions: number[]) => {
    const out = path.join(dir, name);
    await mkdir(out, { recursive: true });
    const img = new Uint8Array(positions.length * pixels);
    const lab = new Uint8Array(positions.length);
    positions.forEach((p, j) => {
      img.set(images.values.subarray(p * pixels, (p + 1) * pixels), j * pixels);
      lab[j] = labels.values[p];
    });
    await writeFileAtomic(path.join(out, FILES.trainImages), encodeIdx([positions.length, h, w], img));
    await writeFileAtomic(path.join(out, FILES.trainLabels), encodeIdx([positions.length], lab));
    await writeFileAtomic(path.join(out, FILES.testImages), encodeIdx(testImages.dims, testImages.values));
    await writeFileAtomic(path.join(out, FILES.testLabels), encodeIdx(testLabels.dims, testLabels.values));
    return out;
  };
  const first = halfOfEachClass(labels.values, "first");
  const second = halfOfEachClass(labels.values, "second");
  return {
    pretrainDir: await write("pretrain", first),
    continualDir: await write("continual", second),
    pretrainCount: first.length,
    continualCount: second.length,
    sourceSha256: hash.digest("hex"),
  };
}
