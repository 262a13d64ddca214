/**
 * Base ViT weights from a `.safetensors` file with timm names or a Google ViT `.npz` (converted through
 * the one table in jax_to_timm.ts). Every tensor the model needs is checked for presence, shape and finite
 * values; tensors the model does not use (the pretrained `head.*`, `pre_logits.*`) are reported back.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { readNpz } from "../../common/npy.js";
import { readSafetensors } from "../../common/safetensors.js";
import { jaxToTimm } from "./jax_to_timm.js";
import type { HostTensor } from "./vit.js";
import { expectedShapes, VIT_PRESETS, type VitConfig } from "./vit_config.js";

export class WeightsError extends Error {
  override readonly name = "WeightsError";
}

/** Values the config may pin; each must agree with the checkpoint. */
export interface WeightOverrides {
  readonly imgSize?: number;
  readonly patchSize?: number;
  readonly depth?: number;
  readonly embedDim?: number;
  readonly numHeads?: number;
}

export interface LoadedWeights {
  readonly cfg: VitConfig;
  readonly tensors: Map<string, HostTensor>;
  /** Names in the file the model does not use. */
  readonly unused: string[];
  /** Lowercase hex SHA-256 of the file's bytes. */
  readonly fingerprint: string;
  readonly format: "safetensors" | "npz";
}

export async function fingerprintFile(file: string): Promise<string> {
  return createHash("sha256")
    .update(await readFile(file))
    .digest("hex");
}

async function readAsFloat32(
  file: string,
): Promise<{ tensors: Map<string, HostTensor>; format: "safetensors" | "npz" }> {
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
  } finally {
    await fh.close();
  }
  const isZip = head[0] === 0x50 && head[1] === 0x4b; // "PK": an .npz archive
  const out = new Map<string, HostTensor>();
  if (isZip) {
    const arrays = await readNpz(file);
    const asFloat = new Map<string, { shape: number[]; data: Float32Array | Float64Array }>();
    for (const [name, a] of arrays) {
      if (!(a.data instanceof Float32Array || a.data instanceof Float64Array)) {
        throw new WeightsError(`${file}: entry ${name} has dtype ${a.dtype}; weights must be floating point`);
      }
      asFloat.set(name, { shape: a.shape, data: a.data });
    }
    for (const [name, t] of jaxToTimm(asFloat, file)) out.set(name, { shape: t.shape, data: t.data });
    return { tensors: out, format: "npz" };
  }
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
): Promise<{ cfg: VitConfig; fingerprint: string; format: "safetensors" | "npz" }> {
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
