/**
 * Base ViT weights from a `.safetensors` file with timm names, a Google ViT `.npz` (converted through the
 * one table in jax_to_timm.ts) or a PyTorch `.pth` (the layouts of pth_to_timm.ts). Every tensor the model needs is checked for presence, shape and finite
 * values; tensors the model does not use (the pretrained `head.*`, `pre_logits.*`) are reported back.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { npzArrays } from "../../common/npy.js";
import { type PthOptions, readPthArchive } from "../../common/pth.js";
import { readSafetensors } from "../../common/safetensors.js";
import { expectedShapes, type FinalNorm, VIT_PRESETS, type VitConfig } from "../../common/vit_config.js";
import { openZip } from "../../common/zip.js";
import { jaxToTimm } from "./jax_to_timm.js";
import { type PthLayout, selectPthLayout } from "./pth_to_timm.js";
import type { HostTensor } from "./vit.js";

export class WeightsError extends Error {
  override readonly name = "WeightsError";
}

export type WeightsFormat = "safetensors" | "npz" | "pth";

/** Values the config may pin; each must agree with the checkpoint. */
export interface WeightOverrides {
  readonly imgSize?: number;
  readonly patchSize?: number;
  readonly depth?: number;
  readonly embedDim?: number;
  readonly numHeads?: number;
  /** Not read from the checkpoint: the method's choice, carried into the config (see FinalNorm). */
  readonly finalNorm?: FinalNorm;
}

export interface LoadedWeights {
  readonly cfg: VitConfig;
  readonly tensors: Map<string, HostTensor>;
  /** Names in the file the model does not use. */
  readonly unused: string[];
  /** Lowercase hex SHA-256 of the file's bytes. */
  readonly fingerprint: string;
  readonly format: WeightsFormat;
}

export async function fingerprintFile(file: string): Promise<string> {
  return createHash("sha256")
    .update(await readFile(file))
    .digest("hex");
}

async function readAsFloat32(
  file: string,
): Promise<{ tensors: Map<string, HostTensor>; format: WeightsFormat }> {
  const head = new Uint8Array(4);
  const { open } = await import("node:fs/promises");
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(file, "r");
  } catch (err) {
    throw new WeightsError(
      `${file}: cannot open the weights (${(err as NodeJS.ErrnoException).code ?? err})`,
    );
  }
  try {
    await fh.read(head, 0, 4, 0);
  } catch (err) {
    // A directory opens but does not read (EISDIR).
    throw new WeightsError(
      `${file}: cannot read the weights (${(err as NodeJS.ErrnoException).code ?? err})`,
    );
  } finally {
    await fh.close();
  }
  if (head[0] === 0x50 && head[1] === 0x4b) {
    // "PK": a zip, an .npz or a .pth.
    const foreign = await readForeignCheckpoint(file);
    return { tensors: foreign.timm, format: foreign.format };
  }
  const out = new Map<string, HostTensor>();
  const st = await readSafetensors(file);
  for (const [name, t] of st.tensors) {
    if (t.data instanceof Float32Array) out.set(name, { shape: t.shape, data: t.data });
    else if (t.data instanceof Float64Array)
      out.set(name, { shape: t.shape, data: Float32Array.from(t.data) });
    else out.set(name, { shape: t.shape, data: new Float32Array(0) }); // integer tensors are never model weights
  }
  return { tensors: out, format: "safetensors" };
}

function shapeOf(tensors: Map<string, HostTensor>, name: string, file: string): readonly number[] {
  const t = tensors.get(name);
  if (!t) throw new WeightsError(`${file}: missing tensor ${name}`);
  return t.shape;
}

/** Reads the dimensions off the checkpoint; `overrides` must agree with them. */
export function inferConfig(
  tensors: Map<string, HostTensor>,
  file: string,
  overrides: WeightOverrides = {},
): VitConfig {
  const patch = shapeOf(tensors, "patch_embed.proj.weight", file);
  if (patch.length !== 4 || patch[2] !== patch[3]) {
    throw new WeightsError(
      `${file}: tensor patch_embed.proj.weight has shape [${patch}], expected [D, C, p, p]`,
    );
  }
  const [embedDim, inChans, patchSize] = patch;
  const pos = shapeOf(tensors, "pos_embed", file);
  const grid = Math.round(Math.sqrt((pos[1] ?? 0) - 1));
  if (pos.length !== 3 || grid * grid + 1 !== pos[1]) {
    throw new WeightsError(`${file}: tensor pos_embed has shape [${pos}], expected [1, (S/p)²+1, D]`);
  }
  let depth = 0;
  while (tensors.has(`blocks.${depth}.norm1.weight`)) depth++;
  const fc1 = shapeOf(tensors, "blocks.0.mlp.fc1.weight", file);
  const preset = Object.values(VIT_PRESETS).find((p) => p.embedDim === embedDim);
  const numHeads = overrides.numHeads ?? preset?.numHeads;
  if (numHeads === undefined) {
    throw new WeightsError(
      `${file}: cannot tell the number of heads for width ${embedDim}; set "num_heads" in the config`,
    );
  }
  const cfg: VitConfig = {
    imgSize: grid * patchSize,
    patchSize,
    inChans,
    embedDim,
    depth,
    numHeads,
    mlpHidden: fc1[0],
    // Only when asked, so every other model's config stays as it was.
    ...(overrides.finalNorm === "fresh" ? { finalNorm: "fresh" as const } : {}),
  };
  const pins: [keyof WeightOverrides, string, number][] = [
    ["imgSize", "img_size", cfg.imgSize],
    ["patchSize", "patch_size", cfg.patchSize],
    ["depth", "depth", cfg.depth],
    ["embedDim", "embd_dim", cfg.embedDim],
  ];
  for (const [key, configKey, actual] of pins) {
    const want = overrides[key];
    if (want !== undefined && want !== actual) {
      throw new WeightsError(
        `${file}: config key "${configKey}" is ${want} but the checkpoint has ${actual}`,
      );
    }
  }
  if (embedDim % numHeads !== 0) {
    throw new WeightsError(`${file}: width ${embedDim} is not divisible by num_heads ${numHeads}`);
  }
  return cfg;
}

/** Checks every expected tensor's presence, shape and values; returns the names the model ignores. */
export function validateWeights(tensors: Map<string, HostTensor>, cfg: VitConfig, file: string): string[] {
  const expected = expectedShapes(cfg);
  for (const [name, shape] of expected) {
    const t = tensors.get(name);
    if (!t) throw new WeightsError(`${file}: missing tensor ${name} (expected shape [${shape}])`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new WeightsError(`${file}: tensor ${name} has shape [${t.shape}], expected [${shape}]`);
    }
    for (let i = 0; i < t.data.length; i++) {
      if (!Number.isFinite(t.data[i])) {
        throw new WeightsError(
          `${file}: tensor ${name} holds a non-finite value (${t.data[i]}) at flat index ${i}`,
        );
      }
    }
  }
  return [...tensors.keys()].filter((n) => !expected.has(n)).sort();
}

/**
 * Dimensions and fingerprint of a weights file without building the model: the header only for
 * safetensors (the whole file for an .npz, whose shapes need the conversion table).
 */
export async function describeWeights(
  file: string,
  overrides: WeightOverrides = {},
): Promise<{ cfg: VitConfig; fingerprint: string; format: WeightsFormat }> {
  const loaded = await loadWeights(file, overrides);
  return { cfg: loaded.cfg, fingerprint: loaded.fingerprint, format: loaded.format };
}

export async function loadWeights(file: string, overrides: WeightOverrides = {}): Promise<LoadedWeights> {
  const { tensors, format } = await readAsFloat32(file);
  const cfg = inferConfig(tensors, file, overrides);
  const unused = validateWeights(tensors, cfg, file);
  for (const name of unused) tensors.delete(name);
  return { cfg, tensors, unused, fingerprint: await fingerprintFile(file), format };
}

// ------------------------------------------------------------------- checkpoints of other frameworks

export interface ForeignTensorInfo {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
}

export interface ForeignCheckpoint {
  readonly format: Exclude<WeightsFormat, "safetensors">;
  /** The tensors as stored: an .npz's under its own names, a .pth's chosen state_dict's under timm names. */
  readonly raw: ForeignTensorInfo[];
  /** timm names, float32. */
  readonly timm: Map<string, HostTensor>;
  /** Heads read off the attention kernels (.npz only; a .pth's fused qkv does not tell them). */
  readonly heads?: number;
  /** .pth only: the layout used, all the layouts the file has, and the names left out. */
  readonly pth?: { layout: PthLayout; found: readonly string[]; ignored: readonly string[] };
}

export interface ForeignOptions extends PthOptions {
  /** .pth: the layout to take (PTH_LAYOUTS id) instead of the first found. */
  readonly layout?: string;
}

export async function readForeignCheckpoint(
  file: string,
  opts: ForeignOptions = {},
): Promise<ForeignCheckpoint> {
  const zip = await openZip(file, ".npz or .pth");
  if (zip.names.some((n) => /^[^/]+\/data\.pkl$/.test(n))) {
    const { root } = readPthArchive(zip, opts);
    const sel = selectPthLayout(root, file, opts.layout);
    const raw: ForeignTensorInfo[] = [];
    const timm = new Map<string, HostTensor>();
    for (const [name, t] of sel.tensors) {
      raw.push({ name, dtype: t.dtype, shape: t.shape });
      const v = t.values();
      // Integer tensors (counters, index buffers) are never weights: listed in raw, left out of timm.
      if (v instanceof Float32Array) timm.set(name, { shape: [...t.shape], data: v });
      else if (v instanceof Float64Array) timm.set(name, { shape: [...t.shape], data: Float32Array.from(v) });
    }
    return { format: "pth", raw, timm, pth: { layout: sel.layout, found: sel.found, ignored: sel.ignored } };
  }
  const arrays = npzArrays(zip);
  if (arrays.size === 0) {
    throw new WeightsError(`${file}: a zip archive with neither .npy entries nor a torch.save data.pkl`);
  }
  const raw = [...arrays].map(([name, a]) => ({ name, dtype: a.dtype, shape: a.shape }));
  for (const [name, a] of arrays) {
    if (!(a.data instanceof Float32Array || a.data instanceof Float64Array)) {
      throw new WeightsError(`${file}: entry ${name} has dtype ${a.dtype}; weights must be floating point`);
    }
  }
  let heads: number | undefined;
  for (const [name, a] of arrays) {
    if (/MultiHeadDotProductAttention_1\/query\/kernel$/.test(name) && a.shape.length === 3)
      heads ??= a.shape[1];
  }
  return { format: "npz", raw, timm: jaxToTimm(arrays, file), heads };
}
