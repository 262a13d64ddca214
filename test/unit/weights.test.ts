/** Base weights: every bad input gives an error naming the file, the tensor and both shapes. */
import { existsSync, mkdtempSync, readdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { readSafetensors, type StTensor, writeSafetensors } from "../../common/safetensors.js";
import { loadWeights, WeightsError } from "../../worker/model/load_weights.js";
import { REFERENCE_DIR } from "../helpers/reference_compare.js";

/** The fixture's width (48) matches no preset, so the head count comes from the config, as in tiny_config.json. */
const load = (file: string, overrides = {}) => loadWeights(file, { numHeads: 3, ...overrides });
const tiny = path.join(REFERENCE_DIR, "tiny_vit.safetensors");
const dir = mkdtempSync(path.join(os.tmpdir(), "weights-"));

async function variant(name: string, edit: (t: Map<string, StTensor>) => void): Promise<string> {
  const f = await readSafetensors(tiny);
  const tensors = new Map(f.tensors);
  edit(tensors);
  const file = path.join(dir, name);
  await writeSafetensors(file, tensors);
  return file;
}

describe("base weights", () => {
  it("load from safetensors and npz with the same dimensions, ignoring the pretrained head", async () => {
    const a = await load(tiny);
    const b = await load(path.join(REFERENCE_DIR, "tiny_vit.npz"));
    expect(a.cfg).toEqual({
      imgSize: 32,
      patchSize: 4,
      inChans: 3,
      embedDim: 48,
      depth: 3,
      numHeads: 3,
      mlpHidden: 192,
    });
    expect(b.cfg).toEqual(a.cfg);
    expect(a.unused).toEqual(["head.bias", "head.weight"]);
    expect(a.format).toBe("safetensors");
    expect(b.format).toBe("npz");
  });

  it("refuses a tensor with a wrong shape, naming it and both shapes", async () => {
    const file = await variant("wrong_shape.safetensors", (t) => {
      t.set("blocks.1.mlp.fc1.bias", { dtype: "F32", shape: [191], data: new Float32Array(191) });
    });
    await expect(load(file)).rejects.toThrow(WeightsError);
    await expect(load(file)).rejects.toThrow(
      `${file}: tensor blocks.1.mlp.fc1.bias has shape [191], expected [192]`,
    );
  });

  it("refuses a missing tensor", async () => {
    const file = await variant("missing.safetensors", (t) => t.delete("blocks.2.norm2.weight"));
    await expect(load(file)).rejects.toThrow(
      `${file}: missing tensor blocks.2.norm2.weight (expected shape [48])`,
    );
  });

  it("refuses NaN weights, naming the tensor", async () => {
    const file = await variant("nan.safetensors", (t) => {
      const data = Float32Array.from(t.get("blocks.0.attn.qkv.weight")!.data as Float32Array);
      data[77] = Number.NaN;
      t.set("blocks.0.attn.qkv.weight", { dtype: "F32", shape: [144, 48], data });
    });
    await expect(load(file)).rejects.toThrow(
      /tensor blocks\.0\.attn\.qkv\.weight holds a non-finite value \(NaN\) at flat index 77/,
    );
  });

  it("refuses config values that contradict the checkpoint", async () => {
    await expect(load(tiny, { imgSize: 224 })).rejects.toThrow(
      /config key "img_size" is 224 but the checkpoint has 32/,
    );
    await expect(load(tiny, { numHeads: 5 })).rejects.toThrow(/width 48 is not divisible by num_heads 5/);
  });

  it("reads F16 and BF16 weights as float32", async () => {
    const file = await variant("half.safetensors", (t) => {
      t.set("norm.weight", { dtype: "F16", shape: [48], data: new Float32Array(48).fill(0.5) });
      t.set("norm.bias", { dtype: "BF16", shape: [48], data: new Float32Array(48).fill(-2) });
    });
    const w = await load(file);
    expect(w.tensors.get("norm.weight")!.data[3]).toBe(0.5);
    expect(w.tensors.get("norm.bias")!.data[3]).toBe(-2);
  });

  it("names a file that does not exist", async () => {
    await expect(load(path.join(dir, "absent.safetensors"))).rejects.toThrow(
      /absent\.safetensors: cannot open the weights \(ENOENT\)/,
    );
  });

  it("leaves no temporary files behind", () => {
    expect(readdirSync(dir).filter((f) => f.endsWith(".tmp"))).toEqual([]);
    expect(existsSync(dir)).toBe(true);
  });
});
