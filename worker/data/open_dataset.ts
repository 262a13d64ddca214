import { availableParallelism } from "node:os";
import type { Catalog } from "../../common/data/catalog.js";
import { DataError } from "../../common/data/errors.js";
import { openCatalog } from "../../common/data/open_catalog.js";
import type { DataOptions } from "../../common/data/options.js";
import type { Split } from "../../common/data/types.js";
import type { BadImage, JobContextData, LoadJob } from "./load_job.js";
import { LoadPool } from "./load_pool.js";
import { JobRunner } from "./run_job.js";
import type { ImageDataset, LoadOptions } from "./types.js";

/** Below this many output pixels per load, in-memory data is transformed on the calling thread. */
const INLINE_PIXELS = 1 << 18;
/** Loads started by `prefetch` and not yet taken by `load`. */
const MAX_PREFETCHED = 8;

/** A request named a sample its split does not have: the request is at fault, not the data. */
export class SampleIndexError extends RangeError {
  override readonly name = "SampleIndexError";
}

/** An ImageDataset with a prefetch hint and the count of skipped images. */
export interface LoaderDataset extends ImageDataset {
  /** Images that could not be read and were replaced by zeros (`onBadImage: "skip"`). */
  readonly badImages: number;
  /** Starts loading now; a later `load` with the same arguments returns this work. */
  prefetch(split: Split, indices: readonly number[], options: LoadOptions): void;
}

function validate(opts: DataOptions): void {
  if (!Number.isInteger(opts.imageSize) || opts.imageSize <= 0) {
    throw new DataError(`image size must be a positive integer, got ${opts.imageSize}`, "img_size");
  }
  if ((opts.mean === undefined) !== (opts.std === undefined)) {
    throw new DataError("mean and std must be given together", opts.mean === undefined ? "std" : "mean");
  }
  for (const [name, v] of [
    ["mean", opts.mean],
    ["std", opts.std],
  ] as const) {
    if (v !== undefined && (v.length !== 3 || !v.every(Number.isFinite))) {
      throw new DataError(`${name} must be 3 finite numbers`, name);
    }
  }
  if (opts.std?.some((s) => s === 0)) throw new DataError("std must not contain 0", "std");
  if (opts.threads !== undefined && (!Number.isInteger(opts.threads) || opts.threads < 0)) {
    throw new DataError(`threads must be a non-negative integer, got ${opts.threads}`, "threads");
  }
}

/**
 * Opens a dataset for reading pixels: in-memory data decoded once, files decoded by a thread pool. Reads
 * only: a raw ImageNet-R tree's split comes from the manifest when `manifestPath` exists here, else it
 * is recomputed (the same split, from the same files and seed); the manifest is the coordinator's to write.
 */
export async function openDataset(opts: DataOptions): Promise<LoaderDataset> {
  validate(opts);
  const catalog = await openCatalog(opts, { withPixels: true, writeManifest: false });
  return new Dataset(catalog, opts);
}

class Dataset implements LoaderDataset {
  readonly kind: string;
  readonly classNames: readonly string[];
  readonly imageSize: number;
  badImages = 0;
  private readonly context: JobContextData;
  private readonly runner: JobRunner;
  private readonly threads: number;
  private pool: LoadPool | undefined;
  private closed = false;
  private readonly prefetched = new Map<string, Promise<Float32Array>>();
  private readonly warn: (message: string) => void;

  constructor(
    private readonly catalog: Catalog,
    opts: DataOptions,
  ) {
    this.kind = catalog.kind;
    this.classNames = catalog.classNames;
    this.imageSize = opts.imageSize;
    this.threads = opts.threads ?? availableParallelism();
    this.warn = opts.warn ?? ((m) => console.warn(m));
    this.context = {
      imageSize: opts.imageSize,
      testTransform: catalog.testTransform,
      mean: opts.mean,
      std: opts.std,
      onBadImage: opts.onBadImage ?? "error",
      arrays: catalog.storage === "arrays" ? catalog.pixels : undefined,
    };
    this.runner = new JobRunner(this.context);
  }

  labels(split: Split): Int32Array {
    return this.catalog.labels[split].slice();
  }

  prefetch(split: Split, indices: readonly number[], options: LoadOptions): void {
    const key = requestKey(split, indices, options);
    if (this.prefetched.has(key)) return;
    if (this.prefetched.size >= MAX_PREFETCHED) {
      const oldest = this.prefetched.keys().next().value as string;
      this.prefetched.delete(oldest);
    }
    const work = this.loadNow(split, indices, options);
    work.catch(() => {}); // reported by the load() that takes it
    this.prefetched.set(key, work);
  }

  load(split: Split, indices: readonly number[], options: LoadOptions): Promise<Float32Array> {
    const key = requestKey(split, indices, options);
    const ready = this.prefetched.get(key);
    if (ready !== undefined) {
      this.prefetched.delete(key);
      return ready;
    }
    return this.loadNow(split, indices, options);
  }

  private async loadNow(
    split: Split,
    indices: readonly number[],
    options: LoadOptions,
  ): Promise<Float32Array> {
    if (this.closed) throw new Error("dataset is closed");
    if (split !== "train" && split !== "test") throw new DataError(`unknown split "${split}"`, "split");
    if (options.augment && options.key === undefined) throw new Error("load: augment requires a key");
    const n = this.catalog.labels[split].length;
    for (const i of indices) {
      if (!Number.isInteger(i) || i < 0 || i >= n) {
        throw new SampleIndexError(`sample index ${i} out of range for the ${split} split (${n} samples)`);
      }
    }
    const augment = options.augment ? options.key : undefined;
    const files = this.catalog.storage === "files" ? this.catalog.files[split] : undefined;
    const job = (part: readonly number[]): LoadJob => ({
      split,
      indices: part,
      paths: files ? part.map((i) => files[i]) : undefined,
      augment,
    });
    const out = new Float32Array(indices.length * this.runner.imageFloats);
    const S = this.imageSize;
    const inline =
      this.threads === 0 ||
      indices.length <= 1 ||
      (this.catalog.storage === "arrays" && indices.length * S * S <= INLINE_PIXELS);
    if (inline) {
      this.report(await this.runner.run(job(indices), out, 0));
      return out;
    }
    this.pool ??= new LoadPool(this.threads, this.context);
    const pool = this.pool;
    // A few jobs per thread keeps all threads busy to the end of the batch.
    const per = Math.max(1, Math.ceil(indices.length / (this.threads * 2)));
    const parts: Promise<void>[] = [];
    for (let first = 0; first < indices.length; first += per) {
      const part = indices.slice(first, first + per);
      parts.push(
        pool.run(job(part)).then(({ data, bad }) => {
          out.set(data, first * this.runner.imageFloats);
          this.report(bad);
        }),
      );
    }
    await Promise.all(parts);
    return out;
  }

  private report(bad: readonly BadImage[]): void {
    for (const b of bad) {
      this.badImages++;
      this.warn(`${b.file}: ${b.message}; skipped (sample ${b.index} is zeros)`);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.prefetched.clear();
    const pool = this.pool;
    this.pool = undefined;
    await pool?.close();
  }
}

function requestKey(split: Split, indices: readonly number[], options: LoadOptions): string {
  const k = options.augment ? options.key : undefined;
  return `${split}|${k ? `${k.seed},${k.task},${k.epoch}` : "test"}|${indices.join(",")}`;
}
