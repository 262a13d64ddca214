import { describe, expect, it } from "vitest";
import { type NpyArray, readNpz } from "../../common/npy.js";
import { readSafetensors } from "../../common/safetensors.js";
import {
  CheckpointConversionError,
  describeConversions,
  type JaxArray,
  jaxToTimm,
} from "../../worker/model/jax_to_timm.js";

const REF = "test/fixtures/reference";
const NPZ = `${REF}/tiny_vit.npz`;

function bits(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

function errorOf(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CheckpointConversionError);
    return err as Error;
  }
  throw new Error("expected an error");
}

describe("jaxToTimm on the reference fixture", () => {
  it("gives tensors bit-identical to tiny_vit.safetensors, for every name of that file", async () => {
    const npz = await readNpz(NPZ);
    const st = await readSafetensors(`${REF}/tiny_vit.safetensors`);
    const out = jaxToTimm(npz, NPZ);
    expect([...out.keys()].sort()).toEqual([...st.tensors.keys()].sort());
    for (const [name, t] of st.tensors) {
      const c = out.get(name)!;
      expect(c.shape, name).toEqual(t.shape);
      expect(c.data, name).toBeInstanceOf(Float32Array);
      expect(bits(c.data), name).toEqual(bits(t.data as Float32Array));
    }
  });

  it("strips the opt/target/ prefix and converts float64 inputs to float32", async () => {
    const npz = await readNpz(NPZ);
    const plain = jaxToTimm(npz, NPZ);
    const prefixed = new Map<string, JaxArray>();
    for (const [name, a] of npz)
      prefixed.set(`opt/target/${name}`, { shape: a.shape, data: Float64Array.from(a.data as Float32Array) });
    const out = jaxToTimm(prefixed, "prefixed.npz");
    expect([...out.keys()].sort()).toEqual([...plain.keys()].sort());
    for (const [name, t] of plain) {
      expect(out.get(name)!.data, name).toBeInstanceOf(Float32Array);
      expect(bits(out.get(name)!.data), name).toEqual(bits(t.data));
    }
  });

  it("keeps unknown names unchanged and converts pre_logits", async () => {
    const npz: Map<string, JaxArray> = new Map(await readNpz(NPZ));
    const r = 5;
    const pre = new Float32Array(48 * r).map((_, i) => i);
    npz.set("pre_logits/kernel", { shape: [48, r], data: pre });
    npz.set("pre_logits/bias", { shape: [r], data: new Float32Array(r).fill(0.5) });
    npz.set("head/kernel", { shape: [r, 10], data: new Float32Array(r * 10).map((_, i) => i) });
    npz.set("step", { shape: [], data: new Float64Array([1234]) });
    const out = jaxToTimm(npz, "pre.npz");
    const w = out.get("pre_logits.fc.weight")!;
    expect(w.shape).toEqual([r, 48]);
    // weight[o, d] = kernel[d, o]
    expect(w.data[2 * 48 + 7]).toBe(pre[7 * r + 2]);
    expect(out.get("pre_logits.fc.bias")!.shape).toEqual([r]);
    const head = out.get("head.weight")!;
    expect(head.shape).toEqual([10, r]);
    expect(head.data[3 * r + 4]).toBe(4 * 10 + 3);
    expect(out.get("step")).toEqual({ shape: [], data: new Float32Array([1234]) });
  });
});

describe("jaxToTimm layouts on a hand-made block", () => {
  // D = 4, H = 2, K = 2, M = 3: values are their own flat index, so every output element names its source.
  const D = 4;
  const H = 2;
  const K = 2;
  const iota = (n: number, base = 0) => new Float32Array(n).map((_, i) => base + i);
  const att = "Transformer/encoderblock_0/MultiHeadDotProductAttention_1";
  const block = new Map<string, JaxArray>([
    ["embedding/kernel", { shape: [2, 2, 3, D], data: iota(48) }],
    [`${att}/query/kernel`, { shape: [D, H, K], data: iota(16, 0) }],
    [`${att}/key/kernel`, { shape: [D, H, K], data: iota(16, 100) }],
    [`${att}/value/kernel`, { shape: [D, H, K], data: iota(16, 200) }],
    [`${att}/query/bias`, { shape: [H, K], data: iota(4, 0) }],
    [`${att}/key/bias`, { shape: [H, K], data: iota(4, 10) }],
    [`${att}/value/bias`, { shape: [H, K], data: iota(4, 20) }],
    [`${att}/out/kernel`, { shape: [H, K, D], data: iota(16) }],
    ["Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel", { shape: [D, 3], data: iota(12) }],
  ]);

  it("follows timm's _load_weights formulas", () => {
    const out = jaxToTimm(block, "hand.npz");
    // patch_embed.proj.weight[o, c, y, x] = kernel[y, x, c, o]
    const pe = out.get("patch_embed.proj.weight")!;
    expect(pe.shape).toEqual([D, 3, 2, 2]);
    for (let o = 0; o < D; o++)
      for (let c = 0; c < 3; c++)
        for (let y = 0; y < 2; y++)
          for (let x = 0; x < 2; x++)
            expect(pe.data[((o * 3 + c) * 2 + y) * 2 + x]).toBe(((y * 2 + x) * 3 + c) * D + o);
    // qkv.weight[s·D + h·K + k, d] = {q,k,v}_kernel[d, h, k]
    const qkv = out.get("blocks.0.attn.qkv.weight")!;
    expect(qkv.shape).toEqual([3 * D, D]);
    for (let s = 0; s < 3; s++)
      for (let h = 0; h < H; h++)
        for (let k = 0; k < K; k++)
          for (let d = 0; d < D; d++)
            expect(qkv.data[(s * D + h * K + k) * D + d]).toBe(100 * s + (d * H + h) * K + k);
    expect([...out.get("blocks.0.attn.qkv.bias")!.data]).toEqual([
      0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23,
    ]);
    // proj.weight[d, h·K + k] = out_kernel[h, k, d]
    const proj = out.get("blocks.0.attn.proj.weight")!;
    expect(proj.shape).toEqual([D, H * K]);
    for (let d = 0; d < D; d++)
      for (let h = 0; h < H; h++)
        for (let k = 0; k < K; k++) expect(proj.data[d * H * K + h * K + k]).toBe((h * K + k) * D + d);
    expect([...out.get("blocks.0.mlp.fc1.weight")!.data]).toEqual([0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11]);
  });
});

describe("jaxToTimm errors", () => {
  async function fixture(): Promise<Map<string, NpyArray | JaxArray>> {
    return new Map<string, NpyArray | JaxArray>(await readNpz(NPZ));
  }

  it("names the entry, its shape and the expected shape", async () => {
    const npz = await fixture();
    npz.set("Transformer/encoderblock_1/LayerNorm_0/scale", { shape: [47], data: new Float32Array(47) });
    const msg = errorOf(() => jaxToTimm(npz, NPZ)).message;
    expect(msg).toContain(NPZ);
    expect(msg).toContain(
      'entry "Transformer/encoderblock_1/LayerNorm_0/scale" has shape [47], expected [48]',
    );
    expect(msg).toContain('D=48 from "embedding/kernel"');
    expect(msg).toContain('"blocks.1.norm1.weight"');
  });

  it("reports a wrong rank with the sizes the rest of the checkpoint implies, under the original name", async () => {
    const npz = await fixture();
    const renamed = new Map<string, JaxArray>([...npz].map(([n, a]) => [`opt/target/${n}`, a]));
    const name = "opt/target/Transformer/encoderblock_2/MultiHeadDotProductAttention_1/key/kernel";
    renamed.set(name, { shape: [48, 48], data: new Float32Array(48 * 48) });
    const msg = errorOf(() => jaxToTimm(renamed, "ckpt.npz")).message;
    expect(msg).toContain(`ckpt.npz: entry "${name}" has shape [48, 48], expected [48, 3, 16] = [D, H, K]`);
  });

  it("rejects literal sizes that differ (cls must be [1, 1, D])", async () => {
    const npz = await fixture();
    npz.set("cls", { shape: [2, 1, 48], data: new Float32Array(96) });
    expect(errorOf(() => jaxToTimm(npz, NPZ)).message).toContain(
      'entry "cls" has shape [2, 1, 48], expected [1, 1, 48]',
    );
  });

  it("rejects an incomplete q/k/v group", async () => {
    const npz = await fixture();
    npz.delete("Transformer/encoderblock_0/MultiHeadDotProductAttention_1/value/bias");
    const msg = errorOf(() => jaxToTimm(npz, NPZ)).message;
    expect(msg).toContain('"blocks.0.attn.qkv.bias"');
    expect(msg).toContain(
      '"Transformer/encoderblock_0/MultiHeadDotProductAttention_1/value/bias" is missing',
    );
  });

  it("rejects non-float data for a known name, and duplicate names after stripping the prefix", async () => {
    const npz = await fixture();
    npz.set("embedding/bias", { shape: [48], data: new Int32Array(48) });
    expect(errorOf(() => jaxToTimm(npz, NPZ)).message).toContain('entry "embedding/bias" holds Int32Array');
    const dup = new Map<string, JaxArray>([
      ["cls", { shape: [1, 1, 2], data: new Float32Array(2) }],
      ["opt/target/cls", { shape: [1, 1, 2], data: new Float32Array(2) }],
    ]);
    expect(errorOf(() => jaxToTimm(dup, "dup.npz")).message).toContain('"cls" and "opt/target/cls"');
  });
});

describe("describeConversions", () => {
  it("lists every conversion of the table", () => {
    const lines = describeConversions();
    const text = lines.join("\n");
    for (const timm of [
      "patch_embed.proj.weight",
      "cls_token",
      "pos_embed",
      "blocks.{i}.norm1.weight",
      "blocks.{i}.attn.qkv.weight",
      "blocks.{i}.attn.qkv.bias",
      "blocks.{i}.attn.proj.weight",
      "blocks.{i}.mlp.fc2.bias",
      "norm.bias",
      "pre_logits.fc.weight",
      "head.weight",
    ]) {
      expect(text).toContain(timm);
    }
    expect(lines.find((l) => l.includes("patch_embed.proj.weight"))).toContain("transpose(3,2,0,1)");
  });
});
