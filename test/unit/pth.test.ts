/**
 * PyTorch `.pth` checkpoints without Python: the fixtures made by torch.save (test/fixtures/pth/README.md)
 * must give exactly the tensors of their safetensors; any global other than tensors and plain containers is
 * refused, naming it; broken archives give errors naming the file and entry.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { zipSync } from "fflate";
import { describe, expect, it } from "vitest";
import { importWeights } from "../../cli/weights_tools.js";
import { readPthArchive, type TorchTensor } from "../../common/pth.js";
import { readSafetensors, type TypedData } from "../../common/safetensors.js";
import { openZip } from "../../common/zip.js";
import { loadWeights, readForeignCheckpoint } from "../../worker/model/load_weights.js";
import { REFERENCE_DIR } from "../helpers/reference_compare.js";

const PTH = path.resolve(import.meta.dirname, "../fixtures/pth");
const TINY = path.join(REFERENCE_DIR, "tiny_vit.safetensors");
const dir = mkdtempSync(path.join(os.tmpdir(), "pth-test-"));

const bytesOf = (a: TypedData) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Every tensor of `expected` under the same name, shape and bytes (float32), and nothing else. */
async function expectSameTensors(
  actual: ReadonlyMap<string, { shape: readonly number[]; data: TypedData }>,
  expected: string,
) {
  const want = (await readSafetensors(expected)).tensors;
  expect([...actual.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [name, t] of want) {
    const got = actual.get(name)!;
    expect({ name, shape: [...got.shape] }).toEqual({ name, shape: [...t.shape] });
    expect(got.data, name).toBeInstanceOf(Float32Array);
    expect(bytesOf(got.data).equals(bytesOf(t.data)), name).toBe(true);
  }
}

describe(".pth fixtures made by torch.save", () => {
  it.each([
    ["tiny_vit_timm.pth", "timm", TINY],
    ["tiny_vit_dino_full.pth", "teacher", TINY],
    ["tiny_vit_ibot_teacher.pth", "state_dict", TINY],
    ["tiny_vit_timm_fp16.pth", "timm", path.join(PTH, "tiny_vit_timm_fp16_as_f32.safetensors")],
  ])("%s (layout %s) equals its safetensors tensor by tensor", async (file, layout, expected) => {
    const c = await readForeignCheckpoint(path.join(PTH, file));
    expect(c.format).toBe("pth");
    expect(c.pth?.layout.id).toBe(layout);
    await expectSameTensors(c.timm, expected);
  });

  it("DINO: the teacher by default, the student on request, the projection heads left out and reported", async () => {
    const file = path.join(PTH, "tiny_vit_dino_full.pth");
    const teacher = await readForeignCheckpoint(file);
    expect(teacher.pth?.found).toEqual(["teacher", "student"]);
    expect(teacher.pth?.ignored).toEqual(["head.mlp.0.weight", "head.last_layer.weight_g"]);
    const student = await readForeignCheckpoint(file, { layout: "student" });
    expect(student.pth?.ignored).toEqual(["module.head.mlp.0.weight", "module.head.last_layer.weight_g"]);
    await expectSameTensors(student.timm, TINY);
    await expect(readForeignCheckpoint(file, { layout: "state_dict" })).rejects.toThrow(
      /tiny_vit_dino_full\.pth: no "state_dict" state_dict of tensors found.*this file has: teacher, student/,
    );
  });

  it("refuses argparse.Namespace, naming it and the pickle, unless the user allows it", async () => {
    const file = path.join(PTH, "tiny_vit_with_args.pth");
    await expect(readForeignCheckpoint(file)).rejects.toMatchObject({
      name: "PickleError",
      message: expect.stringMatching(
        /tiny_vit_with_args\.pth: tiny_vit_with_args\/data\.pkl: refusing global argparse\.Namespace at byte \d+/,
      ),
    });
    const c = await readForeignCheckpoint(file, { allowGlobals: ["argparse.Namespace"] });
    await expectSameTensors(c.timm, TINY);
  });

  it("loads as base weights directly, like the .npz and .safetensors", async () => {
    const w = await loadWeights(path.join(PTH, "tiny_vit_ibot_teacher.pth"), { numHeads: 3 });
    expect(w.format).toBe("pth");
    expect(w.cfg).toEqual((await loadWeights(TINY, { numHeads: 3 })).cfg);
    expect(w.unused).toEqual(["head.bias", "head.weight"]);
  });

  it("imports to a timm safetensors equal to the fixture's, recording the layout", async () => {
    const out = path.join(dir, "dino.safetensors");
    const s = await importWeights(path.join(PTH, "tiny_vit_dino_full.pth"), out, { numHeads: 3 });
    expect(s.tensors).toBe(44);
    const written = await readSafetensors(out);
    await expectSameTensors(written.tensors, TINY);
    expect(written.metadata).toMatchObject({ source_layout: "teacher", num_heads: "3", embed_dim: "48" });
  });
});

// ---------------------------------------------------------------------------------------------------------
// Hand-made archives: pickles written opcode by opcode, as torch.save's protocol 2 writes them.

const ascii = (s: string) => [...Buffer.from(s, "latin1")];
const i32 = (v: number) => [0x4a, v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >>> 24) & 0xff]; // BININT
const str = (s: string) => {
  const b = Buffer.from(s, "utf8");
  return [0x58, b.length, 0, 0, 0, ...b]; // BINUNICODE
};
const global = (mod: string, name: string) => [0x63, ...ascii(`${mod}\n${name}\n`)];
const tuple = (...items: number[][]) => [0x28, ...items.flat(), 0x74];

/** _rebuild_tensor_v2(storage key `key` of `numel` floats, offset, size, stride, False, OrderedDict()). */
function tensor(key: string, numel: number, offset: number, size: number[], stride: number[]): number[] {
  const storage = [
    ...tuple(str("storage"), global("torch", "FloatStorage"), str(key), str("cpu"), i32(numel)),
    0x51,
  ];
  const hooks = [...global("collections", "OrderedDict"), 0x29, 0x52];
  return [
    ...global("torch._utils", "_rebuild_tensor_v2"),
    ...tuple(storage, i32(offset), tuple(...size.map(i32)), tuple(...stride.map(i32)), [0x89], hooks),
    0x52,
  ];
}

/** {name: value, …} then STOP. */
const dictPickle = (entries: [string, number[]][], extra: number[] = []) =>
  Uint8Array.from([
    0x80,
    0x02,
    0x7d,
    0x28,
    ...entries.flatMap(([k, v]) => [...str(k), ...v]),
    0x75,
    ...extra,
    0x2e,
  ]);

function archive(name: string, pickle: Uint8Array, storages: Record<string, Float32Array>): string {
  const files: Record<string, [Uint8Array, { level: 0 }]> = { "archive/data.pkl": [pickle, { level: 0 }] };
  for (const [k, v] of Object.entries(storages))
    files[`archive/data/${k}`] = [new Uint8Array(v.buffer, v.byteOffset, v.byteLength), { level: 0 }];
  const file = path.join(dir, name);
  writeFileSync(file, zipSync(files));
  return file;
}

const root = async (file: string) => readPthArchive(await openZip(file, ".pth")).root as Map<string, unknown>;
const twelve = Float32Array.from({ length: 12 }, (_, i) => i);

describe("the restricted unpickler on hand-made archives", () => {
  it("builds strided and offset tensors over a shared storage", async () => {
    const file = archive(
      "strided.pth",
      dictPickle([
        ["t", tensor("0", 12, 0, [3, 2], [1, 3])], // a transposed view: (i, j) = storage[i + 3j]
        ["tail", tensor("0", 12, 6, [2, 3], [3, 1])], // contiguous rows 2..3
        ["col", tensor("0", 12, 1, [4], [3])],
      ]),
      { "0": twelve },
    );
    const r = await root(file);
    const values = (k: string) => [...(r.get(k) as TorchTensor).values()];
    expect(values("t")).toEqual([0, 3, 1, 4, 2, 5]);
    expect(values("tail")).toEqual([6, 7, 8, 9, 10, 11]);
    expect(values("col")).toEqual([1, 4, 7, 10]);
    expect((r.get("t") as TorchTensor).storage).toBe((r.get("tail") as TorchTensor).storage);
  });

  it("drops a state_dict's _metadata attributes (BUILD on an OrderedDict)", async () => {
    const od = [...global("collections", "OrderedDict"), 0x29, 0x52];
    const meta = [0x7d, ...str("_metadata"), 0x7d, 0x73]; // {'_metadata': {}}
    const pickle = Uint8Array.from([
      0x80,
      0x02,
      ...od,
      0x28,
      ...str("w"),
      ...tensor("0", 12, 0, [12], [1]),
      0x75,
      ...meta,
      0x62,
      0x2e,
    ]);
    const r = await root(archive("meta.pth", pickle, { "0": twelve }));
    expect([...r.keys()]).toEqual(["w"]);
  });

  it.each([
    ["os", "system"],
    ["builtins", "eval"],
    ["torch", "load"],
    ["numpy.core.multiarray", "_reconstruct"],
  ])("refuses the global %s.%s, naming it and the pickle", async (mod, name) => {
    const file = archive(
      "evil.pth",
      dictPickle([["x", [...global(mod, name), ...tuple(str("echo hi")), 0x52]]]),
      {},
    );
    await expect(root(file)).rejects.toThrow(
      `evil.pth: archive/data.pkl: refusing global ${mod}.${name} at byte`,
    );
  });

  it("names the file and entry for truncated and corrupt archives and inconsistent storages", async () => {
    const good = archive("good.pth", dictPickle([["w", tensor("0", 12, 0, [12], [1])]]), { "0": twelve });
    const bytes = readFileSync(good);

    const truncated = path.join(dir, "truncated.pth");
    writeFileSync(truncated, bytes.subarray(0, bytes.length - 30));
    await expect(root(truncated)).rejects.toThrow(/truncated\.pth: not a valid \.pth \(zip\) archive/);

    const corrupt = path.join(dir, "corrupt.pth");
    const flipped = Buffer.from(bytes);
    flipped[flipped.indexOf(Buffer.from(twelve.buffer)) + 20] ^= 0x40; // inside the storage's values
    writeFileSync(corrupt, flipped);
    const w = (await root(corrupt)).get("w") as TorchTensor;
    expect(() => w.values()).toThrow(/corrupt\.pth: entry "archive\/data\/0": CRC-32 mismatch/);

    const short = archive("short.pth", dictPickle([["w", tensor("0", 12, 0, [12], [1])]]), {
      "0": twelve.subarray(0, 10),
    });
    const s = (await root(short)).get("w") as TorchTensor;
    expect(() => s.values()).toThrow(
      /short\.pth: entry "archive\/data\/0": 40 bytes, the pickle says 12 × F32 = 48/,
    );

    const missing = archive("missing.pth", dictPickle([["w", tensor("7", 12, 0, [12], [1])]]), {
      "0": twelve,
    });
    const m = (await root(missing)).get("w") as TorchTensor;
    expect(() => m.values()).toThrow(
      /missing\.pth: entry "archive\/data\/7": storage missing from the archive/,
    );

    const outside = archive("outside.pth", dictPickle([["w", tensor("0", 12, 0, [4, 4], [4, 1])]]), {
      "0": twelve,
    });
    await expect(root(outside)).rejects.toThrow(
      /outside\.pth: archive\/data\.pkl: not a readable pickle: tensor \[4,4\] at offset 0 reaches element 15 of a storage of 12/,
    );

    const cut = archive("cut.pth", dictPickle([["w", tensor("0", 12, 0, [12], [1])]]).subarray(0, 60), {
      "0": twelve,
    });
    await expect(root(cut)).rejects.toThrow(
      /cut\.pth: archive\/data\.pkl: not a readable pickle: (truncated|unterminated line)/,
    );

    const noPickle = path.join(dir, "nopickle.pth");
    writeFileSync(noPickle, zipSync({ "a/b.txt": new Uint8Array(3) }));
    await expect(root(noPickle)).rejects.toThrow(
      /nopickle\.pth: not a torch\.save archive: expected one <dir>\/data\.pkl/,
    );
  });
});
