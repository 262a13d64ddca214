/**
 * Data-loading benchmark (`npx tsx bench/data.ts`): images/s, and images per CPU-second (per core), of
 * the training transform (RandomResizedCrop(224) + flip) for ImageNet-R-like JPEGs (500×375, decoded
 * each time) and CIFAR-100-like records (32×32 in memory, upsampled to 224), with 0, 1 and 2 loader
 * threads. Writes bench/results/data.json.
 *
 * Real data (its image sizes decide the cost): `npx tsx bench/data.ts --dataset imagenet_r --data-path DIR`
 * adds rows for up to MAX_REAL evenly spread training images of that dataset (results are printed, and
 * written to bench/results/data-real.json instead).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import sharp from "sharp";
import type { DataOptions } from "../common/data/options.js";
import { decodeImage } from "../worker/data/decode_image.js";
import { openDataset } from "../worker/data/open_dataset.js";
import { toTensorTables, transformInto } from "../worker/data/transform.js";

const JPEGS = 200;
const CIFAR = 1000;
const REPEATS = 3;
const MAX_REAL = 640;
const BATCH = 32;
const S = 224;

/** JPEGs with photo-like content: smooth random colour fields plus fine noise, quality 90. */
async function makeJpegFolder(root: string): Promise<void> {
  let seed = 12345;
  const rand = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed >>> 24;
  };
  for (const split of ["train", "test"]) {
    for (let c = 0; c < 4; c++) mkdirSync(join(root, split, `class_${c}`), { recursive: true });
  }
  for (let i = 0; i < JPEGS + 4; i++) {
    const coarse = Buffer.alloc(20 * 15 * 3).map(() => rand());
    const smooth = await sharp(coarse, { raw: { width: 20, height: 15, channels: 3 } })
      .resize(500, 375, { kernel: "cubic" })
      .raw()
      .toBuffer();
    for (let k = 0; k < smooth.length; k++)
      smooth[k] = Math.max(0, Math.min(255, smooth[k] + (rand() >> 4) - 8));
    const file = join(
      root,
      i >= JPEGS ? "test" : "train",
      `class_${i % 4}`,
      `${String(i).padStart(5, "0")}.jpg`,
    );
    await sharp(smooth, { raw: { width: 500, height: 375, channels: 3 } })
      .jpeg({ quality: 90 })
      .toFile(file);
  }
}

function makeCifarBinary(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const records = (n: number) => {
    const b = Buffer.alloc(n * 3074);
    for (let i = 0; i < b.length; i++) b[i] = (i * 2654435761) >>> 24;
    for (let r = 0; r < n; r++) b[r * 3074 + 1] = r % 100;
    return b;
  };
  writeFileSync(join(dir, "train.bin"), records(CIFAR));
  writeFileSync(join(dir, "test.bin"), records(100));
}

interface Measurement {
  dataset: string;
  /** 0: everything on the calling thread (decodes still run on libuv's threads). */
  threads: number;
  images: number;
  seconds: number;
  imagesPerSecond: number;
  cpuSeconds: number;
  imagesPerCpuSecond: number;
}

/**
 * Epochs of training batches with two batches in flight (as a trainer prefetching the next one); the
 * best of REPEATS epochs, since other processes may share the machine.
 */
async function measure(
  name: string,
  opts: DataOptions,
  threads: number,
  limit = Infinity,
): Promise<Measurement> {
  const ds = await openDataset({ ...opts, threads });
  const total = ds.labels("train").length;
  const n = Math.min(total, limit);
  // Evenly spread over the split, so a subset still covers every class (and its image sizes).
  const samples = Array.from({ length: n }, (_, i) => Math.floor((i * total) / n));
  const batches: number[][] = [];
  for (let first = 0; first < n; first += BATCH) batches.push(samples.slice(first, first + BATCH));
  const load = (epoch: number) => ({ augment: true, key: { seed: 0, task: 0, epoch } }) as const;
  // Warm-up: start the pool and the JIT.
  await ds.load("train", batches[0], load(99));
  let seconds = Number.POSITIVE_INFINITY;
  let cpuSeconds = Number.POSITIVE_INFINITY;
  for (let epoch = 0; epoch < REPEATS; epoch++) {
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    ds.prefetch("train", batches[0], load(epoch));
    for (let b = 0; b < batches.length; b++) {
      if (b + 1 < batches.length) ds.prefetch("train", batches[b + 1], load(epoch));
      await ds.load("train", batches[b], load(epoch));
    }
    seconds = Math.min(seconds, (performance.now() - t0) / 1000);
    const cpu = process.cpuUsage(cpu0);
    cpuSeconds = Math.min(cpuSeconds, (cpu.user + cpu.system) / 1e6);
  }
  await ds.close();
  return {
    dataset: name,
    threads,
    images: n,
    seconds: round(seconds),
    imagesPerSecond: round(n / seconds),
    cpuSeconds: round(cpuSeconds),
    imagesPerCpuSecond: round(n / cpuSeconds),
  };
}

const round = (x: number) => Math.round(x * 100) / 100;

/** CPU milliseconds per image of the two halves of the JPEG path, one at a time on one thread. */
async function components(
  file: string,
): Promise<{ decodeMs: number; trainTransformMs: number; testTransformMs: number }> {
  const reps = 100;
  const cpuMs = async (fn: (i: number) => unknown): Promise<number> => {
    for (let i = 0; i < 10; i++) await fn(i);
    const c0 = process.cpuUsage();
    for (let i = 0; i < reps; i++) await fn(i);
    const c = process.cpuUsage(c0);
    return round((c.user + c.system) / 1000 / reps);
  };
  const src = await decodeImage(file);
  const spec = { imageSize: S, testTransform: "resize_center_crop" as const, lut: toTensorTables() };
  const out = new Float32Array(3 * S * S);
  return {
    decodeMs: await cpuMs(() => decodeImage(file)),
    trainTransformMs: await cpuMs((i) => transformInto(src, spec, { seed: 0, task: 0, epoch: 0 }, i, out, 0)),
    testTransformMs: await cpuMs((i) => transformInto(src, spec, undefined, i, out, 0)),
  };
}

/** `--dataset KIND --data-path DIR` from the command line, if given. */
function realDataset(): DataOptions | undefined {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const dataset = arg("--dataset");
  const dataPath = arg("--data-path");
  if (dataset === undefined && dataPath === undefined) return undefined;
  if (dataset === undefined || dataPath === undefined) throw new Error("give both --dataset and --data-path");
  return { dataset, dataPath: resolve(dataPath), imageSize: S };
}

async function main(): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), "inflora-bench-data-"));
  try {
    const real = realDataset();
    if (!real) {
      await makeJpegFolder(join(tmp, "jpeg"));
      makeCifarBinary(join(tmp, "cifar"));
    }
    const cases: [string, DataOptions][] = [
      [
        "ImageNet-R-like JPEG 500×375 → 224 (train)",
        { dataset: "folder", dataPath: join(tmp, "jpeg"), imageSize: S },
      ],
      [
        "CIFAR-100-like 32 → 224 (train)",
        { dataset: "cifar100", dataPath: join(tmp, "cifar"), imageSize: S },
      ],
    ];
    if (real) cases.splice(0, cases.length, [`${real.dataset} at ${real.dataPath} (train)`, real]);
    const results: Measurement[] = [];
    for (const [name, opts] of cases) {
      for (const threads of [0, 1, 2]) {
        const m = await measure(name, opts, threads, real ? MAX_REAL : Infinity);
        results.push(m);
        console.log(
          `${name.padEnd(44)} threads ${threads}  ${String(m.imagesPerSecond).padStart(8)} img/s  ${String(m.imagesPerCpuSecond).padStart(8)} img/CPU-s`,
        );
      }
    }
    const parts = real ? undefined : await components(join(tmp, "jpeg/train/class_0/00000.jpg"));
    if (parts) {
      console.log(
        `JPEG 500×375, CPU ms per image: decode ${parts.decodeMs}, train transform ${parts.trainTransformMs}, test transform ${parts.testTransformMs}`,
      );
    }
    const out = {
      benchmark: "data loading, training transform (RandomResizedCrop(224) + flip + ToTensor)",
      date: new Date().toISOString(),
      machine: {
        cpu: cpus()[0]?.model ?? "unknown",
        cores: availableParallelism(),
        platform: process.platform,
        // Other processes may share the machine: a load above the core count inflates wall times
        // (the per-CPU-second rates much less).
        loadAverageAtEnd: loadavg().map(round),
      },
      node: process.version,
      sharp: sharp.versions.sharp,
      libvips: sharp.versions.vips,
      uvThreadpoolSize: process.env.UV_THREADPOOL_SIZE ?? "4 (default)",
      batch: BATCH,
      note: `best of ${REPEATS} epochs per row; img/CPU-s counts every thread of the process (libuv's decode threads included): the rate per core`,
      jpegComponentsCpuMsPerImage: parts,
      results,
    };
    const file = fileURLToPath(
      new URL(real ? "./results/data-real.json" : "./results/data.json", import.meta.url),
    );
    mkdirSync(fileURLToPath(new URL("./results/", import.meta.url)), { recursive: true });
    writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
    console.log(`\nwritten ${file}`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
