/**
 * `inflora weights`: import a Google ViT `.npz` or a PyTorch `.pth` into a timm-named `.safetensors`,
 * inspect a weights file, and fetch the public augreg ImageNet-21k checkpoints with a digest check.
 */
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, open, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { readSafetensorsHeader, type StTensor, writeSafetensors } from "../common/safetensors.js";
import { VIT_PRESETS } from "../common/vit_config.js";
import {
  type ForeignCheckpoint,
  type ForeignOptions,
  fingerprintFile,
  inferConfig,
  readForeignCheckpoint,
  validateWeights,
  WeightsError,
  type WeightsFormat,
} from "../worker/model/load_weights.js";
import { FETCH_PRESETS } from "./weights_presets.js";

export interface TensorInfo {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
}

/** ViT dimensions read off the tensor shapes; a field is absent when the file does not tell it. */
export interface VitDims {
  readonly imgSize?: number;
  readonly patchSize?: number;
  readonly inChans?: number;
  readonly embedDim?: number;
  readonly depth: number;
  readonly numHeads?: number;
  /** Where numHeads came from: the attention kernels (.npz), the file's metadata, or timm's preset for the width. */
  readonly numHeadsFrom?: "kernel shape" | "metadata" | "preset width" | "--num-heads option";
  readonly mlpHidden?: number;
  readonly numClasses?: number;
  readonly preLogits: boolean;
}

export interface WeightsInfo {
  readonly file: string;
  readonly format: WeightsFormat;
  readonly bytes: number;
  readonly tensors: TensorInfo[];
  readonly parameters: number;
  readonly dims: VitDims;
  readonly metadata: Record<string, string>;
  /** .pth: the layout read, every layout the file has, and the names of its state_dict left out. */
  readonly pth?: ForeignCheckpoint["pth"];
}

const count = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Dimensions from timm names and shapes. */
export function inferDims(
  shapes: ReadonlyMap<string, readonly number[]>,
  heads?: { value: number; from: VitDims["numHeadsFrom"] },
): VitDims {
  const patch = shapes.get("patch_embed.proj.weight");
  const pos = shapes.get("pos_embed");
  let depth = 0;
  while (shapes.has(`blocks.${depth}.norm1.weight`)) depth++;
  const embedDim = patch?.[0];
  const patchSize = patch?.[2];
  const grid = pos ? Math.round(Math.sqrt(pos[1] - 1)) : undefined;
  const preset = Object.values(VIT_PRESETS).find((p) => p.embedDim === embedDim);
  const numHeads = heads?.value ?? preset?.numHeads;
  return {
    imgSize: grid !== undefined && patchSize !== undefined ? grid * patchSize : undefined,
    patchSize,
    inChans: patch?.[1],
    embedDim,
    depth,
    numHeads,
    numHeadsFrom: heads?.from ?? (preset ? "preset width" : undefined),
    mlpHidden: shapes.get("blocks.0.mlp.fc1.weight")?.[0],
    numClasses: shapes.get("head.weight")?.[0],
    preLogits: shapes.has("pre_logits.fc.weight"),
  };
}

async function isZip(file: string): Promise<boolean> {
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(file, "r");
  } catch (err) {
    throw new WeightsError(`${file}: cannot open (${(err as NodeJS.ErrnoException).code ?? err})`);
  }
  try {
    const head = new Uint8Array(2);
    await fh.read(head, 0, 2, 0);
    return head[0] === 0x50 && head[1] === 0x4b;
  } finally {
    await fh.close();
  }
}

/** Names, dtypes, shapes and dimensions; a .safetensors is read header only. */
export async function inspectWeights(file: string, opts: ForeignOptions = {}): Promise<WeightsInfo> {
  const { size } = await stat(file).catch((err: NodeJS.ErrnoException) => {
    throw new WeightsError(`${file}: cannot open (${err.code ?? err})`);
  });
  if (await isZip(file)) {
    const { format, raw, timm, heads, pth } = await readForeignCheckpoint(file, opts);
    const shapes = new Map([...timm].map(([n, t]) => [n, t.shape] as const));
    return {
      file,
      format,
      bytes: size,
      tensors: raw,
      parameters: raw.reduce((n, t) => n + count(t.shape), 0),
      dims: inferDims(shapes, heads === undefined ? undefined : { value: heads, from: "kernel shape" }),
      metadata: {},
      pth,
    };
  }
  const { entries, metadata } = await readSafetensorsHeader(file);
  const tensors = [...entries].map(([name, e]) => ({ name, dtype: e.dtype, shape: e.shape }));
  const fromMeta = Number(metadata.num_heads);
  return {
    file,
    format: "safetensors",
    bytes: size,
    tensors,
    parameters: tensors.reduce((n, t) => n + count(t.shape), 0),
    dims: inferDims(
      new Map(tensors.map((t) => [t.name, t.shape] as const)),
      Number.isInteger(fromMeta) && fromMeta > 0 ? { value: fromMeta, from: "metadata" } : undefined,
    ),
    metadata,
  };
}

export interface ImportSummary {
  readonly out: string;
  readonly tensors: number;
  readonly parameters: number;
  readonly dims: VitDims;
  readonly sourceSha256: string;
  readonly pth?: ForeignCheckpoint["pth"];
}

export interface ImportOptions extends ForeignOptions {
  /** Heads, where the file cannot tell them (a .pth of a width no timm preset has). */
  readonly numHeads?: number;
}

/**
 * Converts an .npz through the one JAX→timm table, or a .pth through its layout table; checks the
 * model's tensors, and records the source.
 */
export async function importWeights(
  file: string,
  out: string,
  opts: ImportOptions = {},
): Promise<ImportSummary> {
  if (!(await isZip(file))) throw new WeightsError(`${file}: not an .npz or .pth (zip) archive`);
  const sourceSha256 = await fingerprintFile(file);
  const { format, timm, heads, pth } = await readForeignCheckpoint(file, opts);
  if (opts.numHeads !== undefined && heads !== undefined && opts.numHeads !== heads) {
    throw new WeightsError(
      `${file}: --num-heads ${opts.numHeads}, but the attention kernels have ${heads} heads`,
    );
  }
  const cfg = inferConfig(timm, file, { numHeads: opts.numHeads ?? heads });
  validateWeights(timm, cfg, file);
  const tensors = new Map<string, StTensor>(
    [...timm].map(([name, t]) => [name, { dtype: "F32", shape: t.shape, data: t.data }]),
  );
  const dims = inferDims(new Map([...timm].map(([n, t]) => [n, t.shape] as const)), {
    value: cfg.numHeads,
    from:
      opts.numHeads !== undefined
        ? "--num-heads option"
        : heads !== undefined
          ? "kernel shape"
          : "preset width",
  });
  await writeSafetensors(out, tensors, {
    format: "timm-vit",
    source: path.basename(file),
    source_sha256: sourceSha256,
    converted_by: `inflora weights import (worker/model/${format === "npz" ? "jax_to_timm" : "pth_to_timm"}.ts)`,
    ...(pth === undefined ? {} : { source_layout: pth.layout.id }),
    img_size: String(cfg.imgSize),
    patch_size: String(cfg.patchSize),
    in_chans: String(cfg.inChans),
    embed_dim: String(cfg.embedDim),
    depth: String(cfg.depth),
    num_heads: String(cfg.numHeads),
    mlp_hidden: String(cfg.mlpHidden),
    ...(dims.numClasses === undefined ? {} : { num_classes: String(dims.numClasses) }),
  });
  let parameters = 0;
  for (const t of tensors.values()) parameters += t.data.length;
  return { out, tensors: tensors.size, parameters, dims, sourceSha256, pth };
}

// ------------------------------------------------------------------------------------------- fetch

export const DEFAULT_BASE_URL = "https://storage.googleapis.com/vit_models";

export interface FetchOptions {
  readonly preset: string;
  readonly outDir: string;
  readonly baseUrl?: string;
  /** Expected digest; overrides the table's. */
  readonly sha256?: string;
  /** Accept a download whose digest nobody can check (the digest is printed and returned). */
  readonly allowUnverified?: boolean;
  readonly onProgress?: (bytes: number, total: number | undefined) => void;
}

export interface FetchResult {
  readonly file: string;
  readonly url: string;
  readonly sha256: string;
  readonly bytes: number;
  readonly verified: boolean;
  /** true when a file with the expected digest was already in place. */
  readonly alreadyPresent: boolean;
}

/** Streams the preset's .npz to a temp file in `outDir`, checks its digest, then renames it into place. */
export async function fetchWeights(opts: FetchOptions): Promise<FetchResult> {
  const preset = FETCH_PRESETS[opts.preset];
  if (!preset) {
    throw new WeightsError(`unknown model "${opts.preset}"; known: ${Object.keys(FETCH_PRESETS).join(", ")}`);
  }
  const expected = (opts.sha256 ?? preset.sha256 ?? undefined)?.toLowerCase();
  if (expected !== undefined && !/^[0-9a-f]{64}$/.test(expected)) {
    throw new WeightsError(`--sha256 must be 64 hex digits, got "${opts.sha256}"`);
  }
  if (expected === undefined && !opts.allowUnverified) {
    throw new WeightsError(
      `no SHA-256 is known for ${opts.preset} (${preset.path}); pass --sha256 HEX from a source you trust, ` +
        "or --allow-unverified to download it anyway and print its digest",
    );
  }
  const url = `${(opts.baseUrl ?? DEFAULT_BASE_URL).replace(/\/+$/, "")}/${preset.path}`;
  const file = path.join(opts.outDir, `${opts.preset}.npz`);
  if (expected !== undefined && existsSync(file) && (await fingerprintFile(file)) === expected) {
    return { file, url, sha256: expected, bytes: 0, verified: true, alreadyPresent: true };
  }
  await mkdir(opts.outDir, { recursive: true });
  let response: Response;
  try {
    response = await fetch(url);
  } catch (err) {
    const cause = (err as { cause?: { message?: string } }).cause?.message ?? (err as Error).message;
    throw new WeightsError(`${url}: download failed (${cause})`);
  }
  if (!response.ok || response.body === null) {
    throw new WeightsError(
      `${url}: the server answered HTTP ${response.status} ${response.statusText}`.trim(),
    );
  }
  const total = Number(response.headers.get("content-length")) || undefined;
  const tmp = path.join(opts.outDir, `.${opts.preset}.npz.${randomBytes(6).toString("hex")}.part`);
  const hash = createHash("sha256");
  let bytes = 0;
  const fh = await open(tmp, "wx");
  let placed = false;
  try {
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        hash.update(chunk);
        let off = 0;
        while (off < chunk.length) off += (await fh.write(chunk, off, chunk.length - off)).bytesWritten;
        bytes += chunk.length;
        opts.onProgress?.(bytes, total);
      }
      await fh.sync();
    } catch (err) {
      throw new WeightsError(`${url}: download interrupted after ${bytes} bytes (${(err as Error).message})`);
    } finally {
      await fh.close();
    }
    if (total !== undefined && bytes !== total) {
      throw new WeightsError(`${url}: received ${bytes} bytes, the server announced ${total}`);
    }
    const sha256 = hash.digest("hex");
    if (expected !== undefined && sha256 !== expected) {
      throw new WeightsError(
        `${url}: SHA-256 mismatch: downloaded ${sha256}, expected ${expected}; nothing was written to ${opts.outDir}`,
      );
    }
    await rename(tmp, file);
    placed = true;
    return { file, url, sha256, bytes, verified: expected !== undefined, alreadyPresent: false };
  } finally {
    if (!placed) await rm(tmp, { force: true });
  }
}
