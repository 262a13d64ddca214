import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { writeFileAtomic } from "../../common/atomic_write.js";
import {
  bf16ToF32,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  parseSafetensors,
  readSafetensors,
  readSafetensorsHeader,
  SafetensorsError,
  type StTensor,
  serializeSafetensors,
  writeSafetensors,
} from "../../common/safetensors.js";

const REF = "test/fixtures/reference";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "safetensors-test-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A file from a header given as an object or raw string, with the header padded the way the spec allows. */
function build(header: unknown, data: Uint8Array | number = 0): Uint8Array {
  const json = Buffer.from(typeof header === "string" ? header : JSON.stringify(header), "utf8");
  const body = typeof data === "number" ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + json.length + body.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(body, 8 + json.length);
  return out;
}

function u16le(...xs: number[]): Uint8Array {
  const out = new Uint8Array(xs.length * 2);
  xs.forEach((x, i) => {
    out[2 * i] = x & 0xff;
    out[2 * i + 1] = x >> 8;
  });
  return out;
}

function concat(chunks: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(chunks));
}

describe("half-precision bit patterns", () => {
  it("decodes binary16", () => {
    expect(f16ToF32(0x3c00)).toBe(1);
    expect(f16ToF32(0xc000)).toBe(-2);
    expect(f16ToF32(0x7c00)).toBe(Number.POSITIVE_INFINITY);
    expect(f16ToF32(0xfc00)).toBe(Number.NEGATIVE_INFINITY);
    expect(f16ToF32(0x0001)).toBe(2 ** -24);
    expect(f16ToF32(0x03ff)).toBe(1023 * 2 ** -24);
    expect(f16ToF32(0x0400)).toBe(2 ** -14);
    expect(f16ToF32(0x7bff)).toBe(65504);
    expect(f16ToF32(0x3555)).toBe(0.333251953125); // nearest half to 1/3: 2^-2 · (1 + 0x155/1024)
    expect(Object.is(f16ToF32(0x8000), -0)).toBe(true);
    expect(f16ToF32(0x7e00)).toBeNaN();
  });

  it("decodes bfloat16", () => {
    expect(bf16ToF32(0x3f80)).toBe(1);
    expect(bf16ToF32(0xc000)).toBe(-2);
    expect(bf16ToF32(0x7f80)).toBe(Number.POSITIVE_INFINITY);
    expect(bf16ToF32(0x3f81)).toBe(1 + 2 ** -7);
    expect(bf16ToF32(0x7fc0)).toBeNaN();
  });

  it("encodes with round-to-nearest-even", () => {
    expect(f32ToF16(1)).toBe(0x3c00);
    expect(f32ToF16(-2)).toBe(0xc000);
    expect(f32ToF16(2 ** -24)).toBe(0x0001);
    expect(f32ToF16(1 + 2 ** -11)).toBe(0x3c00); // tie → even mantissa
    expect(f32ToF16(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie → even mantissa (up)
    expect(f32ToF16(65504)).toBe(0x7bff);
    expect(f32ToF16(65520)).toBe(0x7c00); // rounds up past the largest finite half
    expect(f32ToF16(1e-8)).toBe(0x0000);
    expect(f32ToF16(3 * 2 ** -25)).toBe(0x0002); // 1.5 units → 2 (even)
    expect(f32ToF16(2 ** -25)).toBe(0x0000); // half a unit → 0 (even)
    expect(f32ToF16(Number.NaN) & 0x7fff).toBeGreaterThan(0x7c00);
    expect(f32ToBf16(1)).toBe(0x3f80);
    expect(f32ToBf16(1 + 2 ** -8)).toBe(0x3f80); // tie → even
    expect(f32ToBf16(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(f32ToBf16(Number.NaN) & 0x7fff).toBeGreaterThan(0x7f80);
  });

  it("reads F16 and BF16 tensors widened to Float32Array, keeping the file's dtype", () => {
    const file = build(
      {
        b: { dtype: "BF16", shape: [2], data_offsets: [10, 14] },
        h: { dtype: "F16", shape: [5], data_offsets: [0, 10] },
      },
      concat([u16le(0x3c00, 0xc000, 0x7c00, 0x0001, 0x8000), u16le(0x3f80, 0xc000)]),
    );
    const { tensors } = parseSafetensors(file, "half.safetensors");
    const h = tensors.get("h")!;
    expect(h.dtype).toBe("F16");
    expect(h.data).toBeInstanceOf(Float32Array);
    expect([...h.data]).toEqual([1, -2, Number.POSITIVE_INFINITY, 2 ** -24, -0]);
    const b = tensors.get("b")!;
    expect(b.dtype).toBe("BF16");
    expect(b.data).toBeInstanceOf(Float32Array);
    expect([...b.data]).toEqual([1, -2]);
  });
});

describe("round trip", () => {
  it("keeps every dtype, shape, value and the metadata", async () => {
    const tensors: Record<string, StTensor> = {
      f64: { dtype: "F64", shape: [2, 2], data: new Float64Array([1.5, -1e300, Math.PI, 5e-324]) },
      f32: { dtype: "F32", shape: [3], data: new Float32Array([0.1, -0, 3.4e38]) },
      f16: {
        dtype: "F16",
        shape: [5],
        data: new Float32Array([1, -2, Number.POSITIVE_INFINITY, 2 ** -24, 65504]),
      },
      bf16: { dtype: "BF16", shape: [1, 3], data: new Float32Array([1, -2, 2 ** 100]) },
      i64: { dtype: "I64", shape: [2], data: new BigInt64Array([-(2n ** 63n), 2n ** 53n + 1n]) },
      i32: { dtype: "I32", shape: [2], data: new Int32Array([-(2 ** 31), 2 ** 31 - 1]) },
      i16: { dtype: "I16", shape: [2], data: new Int16Array([-32768, 32767]) },
      i8: { dtype: "I8", shape: [3], data: new Int8Array([-128, 0, 127]) },
      u8: { dtype: "U8", shape: [2], data: new Uint8Array([0, 255]) },
      bool: { dtype: "BOOL", shape: [3], data: new Uint8Array([1, 0, 1]) },
      scalar: { dtype: "F32", shape: [], data: new Float32Array([7]) },
      empty: { dtype: "F32", shape: [0, 4], data: new Float32Array(0) },
    };
    const metadata = { format: "inflora-checkpoint/1", task: "3", note: 'quotes " and ünïcode ✓' };
    const path = join(dir, "all.safetensors");
    await writeSafetensors(path, tensors, metadata);
    const back = await readSafetensors(path);
    expect(back.metadata).toEqual(metadata);
    expect([...back.tensors.keys()].sort()).toEqual(Object.keys(tensors).sort());
    for (const [name, t] of Object.entries(tensors)) {
      const r = back.tensors.get(name)!;
      expect(r.dtype, name).toBe(t.dtype);
      expect(r.shape, name).toEqual(t.shape);
      expect(r.data.constructor, name).toBe(t.data.constructor);
      expect([...r.data], name).toEqual([...t.data]);
    }
    // The F16/BF16 bits on disk are the known patterns, not just something that decodes back.
    const raw = await readFile(path);
    const header = await readSafetensorsHeader(path);
    const dataStart = 8 + Number(raw.readBigUInt64LE(0));
    const [f16Begin] = header.entries.get("f16")!.offsets;
    expect([...raw.subarray(dataStart + f16Begin, dataStart + f16Begin + 10)]).toEqual([
      ...u16le(0x3c00, 0xc000, 0x7c00, 0x0001, 0x7bff),
    ]);
    const [bfBegin] = header.entries.get("bf16")!.offsets;
    expect([...raw.subarray(dataStart + bfBegin, dataStart + bfBegin + 6)]).toEqual([
      ...u16le(0x3f80, 0xc000, 0x7180),
    ]);
  });

  it("accepts a Map and writes no metadata block when there is none", () => {
    const chunks = serializeSafetensors(
      new Map([["x", { dtype: "U8", shape: [1], data: new Uint8Array([9]) }]]),
    );
    const file = concat(chunks);
    const text = Buffer.from(file.subarray(8, 8 + Number(Buffer.from(file).readBigUInt64LE(0)))).toString();
    expect(text.trimEnd()).toBe('{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}');
    expect(parseSafetensors(file, "m").metadata).toEqual({});
  });
});

describe("byte layout", () => {
  it("matches a hand-computed two-tensor file", () => {
    const chunks = serializeSafetensors(
      {
        b: { dtype: "I16", shape: [3], data: new Int16Array([1, -1, 256]) },
        a: { dtype: "F32", shape: [2], data: new Float32Array([1, -2]) },
      },
      { k: "v" },
    );
    const file = concat(chunks);
    // 133 bytes of JSON; 8 + 133 = 141, padded with 3 spaces to 144 → header length 136 = 0x88.
    const json =
      '{"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I16","shape":[3],"data_offsets":[8,14]}}';
    expect(json.length).toBe(133);
    const expected = concat([
      new Uint8Array([0x88, 0, 0, 0, 0, 0, 0, 0]),
      Buffer.from(`${json}   `, "ascii"),
      new Uint8Array([0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0]), // 1.0f, -2.0f
      new Uint8Array([0x01, 0x00, 0xff, 0xff, 0x00, 0x01]), // 1, -1, 256
    ]);
    expect(file.length).toBe(158);
    expect([...file]).toEqual([...expected]);
  });

  it("re-serializes the reference files byte for byte", async () => {
    for (const f of [
      `${REF}/tiny_vit.safetensors`,
      `${REF}/expected/checkpoints/task-00.safetensors`,
      `${REF}/expected/predictions/task-04.safetensors`,
    ]) {
      const original = await readFile(f);
      const parsed = await readSafetensors(f);
      expect(
        Buffer.compare(Buffer.concat(serializeSafetensors(parsed.tensors, parsed.metadata)), original),
        f,
      ).toBe(0);
    }
  });
});

describe("reference fixtures", () => {
  it("reads tiny_vit.safetensors with the names and shapes of the README", async () => {
    const { tensors, metadata } = await readSafetensors(`${REF}/tiny_vit.safetensors`);
    expect(tensors.size).toBe(4 + 3 * 12 + 4);
    const shapes: Record<string, number[]> = {
      cls_token: [1, 1, 48],
      pos_embed: [1, 65, 48],
      "patch_embed.proj.weight": [48, 3, 4, 4],
      "patch_embed.proj.bias": [48],
      "norm.weight": [48],
      "norm.bias": [48],
      "head.weight": [10, 48],
      "head.bias": [10],
    };
    for (let i = 0; i < 3; i++) {
      Object.assign(shapes, {
        [`blocks.${i}.norm1.weight`]: [48],
        [`blocks.${i}.norm1.bias`]: [48],
        [`blocks.${i}.attn.qkv.weight`]: [144, 48],
        [`blocks.${i}.attn.qkv.bias`]: [144],
        [`blocks.${i}.attn.proj.weight`]: [48, 48],
        [`blocks.${i}.attn.proj.bias`]: [48],
        [`blocks.${i}.norm2.weight`]: [48],
        [`blocks.${i}.norm2.bias`]: [48],
        [`blocks.${i}.mlp.fc1.weight`]: [192, 48],
        [`blocks.${i}.mlp.fc1.bias`]: [192],
        [`blocks.${i}.mlp.fc2.weight`]: [48, 192],
        [`blocks.${i}.mlp.fc2.bias`]: [48],
      });
    }
    expect(Object.fromEntries([...tensors].map(([n, t]) => [n, t.shape]))).toEqual(shapes);
    for (const [name, t] of tensors) {
      expect(t.dtype, name).toBe("F32");
      expect(t.data, name).toBeInstanceOf(Float32Array);
      expect(
        t.data.every((x) => Number.isFinite(x as number)),
        name,
      ).toBe(true);
    }
    expect(metadata.format).toBe("timm VisionTransformer state dict");
    expect(JSON.parse(metadata.dims).embed_dim).toBe(48);
  });

  it("reads a reference checkpoint: float64 orthonormal DualGPM bases and string metadata", async () => {
    const path = `${REF}/expected/checkpoints/task-00.safetensors`;
    const { tensors, metadata } = await readSafetensors(path);
    expect(metadata.format).toBe("inflora-checkpoint/1");
    expect(metadata.task).toBe("0");
    expect(JSON.parse(metadata.dualgpm_types)).toEqual(["remove", "remove", "remove"]);
    const basis = tensors.get("dualgpm.0.basis")!;
    expect(basis.dtype).toBe("F64");
    expect(basis.shape).toEqual([48, 18]);
    expect(basis.data).toBeInstanceOf(Float64Array);
    // Decoded correctly only if UᵀU = I (any byte or layout error breaks orthonormality).
    const u = basis.data as Float64Array;
    let worst = 0;
    for (let a = 0; a < 18; a++) {
      for (let b = 0; b < 18; b++) {
        let s = 0;
        for (let r = 0; r < 48; r++) s += u[r * 18 + a] * u[r * 18 + b];
        worst = Math.max(worst, Math.abs(s - (a === b ? 1 : 0)));
      }
    }
    expect(worst).toBeLessThan(1e-12);
    expect(tensors.get("blocks.2.attn.inflora.A_v.0")!.shape).toEqual([48, 4]);
    expect(tensors.get("heads.0.bias")!.dtype).toBe("F32");

    const header = await readSafetensorsHeader(path);
    expect(header.metadata).toEqual(metadata);
    expect(header.entries.get("dualgpm.0.basis")).toEqual({
      dtype: "F64",
      shape: [48, 18],
      offsets: [9216, 16128],
    });
    expect([...header.entries.keys()]).toEqual([...tensors.keys()]);
  });

  it("reads int64 predictions as BigInt64Array", async () => {
    const { tensors } = await readSafetensors(`${REF}/expected/predictions/task-00.safetensors`);
    const labels = tensors.get("labels")!;
    expect(labels.dtype).toBe("I64");
    expect(labels.data).toBeInstanceOf(BigInt64Array);
    // 40 test samples of classes 0..3, class by class.
    expect([...labels.data].map(Number)).toEqual([0, 1, 2, 3].flatMap((c) => new Array(10).fill(c)));
    expect(tensors.get("logits")!.shape).toEqual([40, 4]);
  });
});

describe("alignment", () => {
  it("copies tensors whose offset is not aligned to the element size", () => {
    const data = new Uint8Array(13);
    data[0] = 0x7f;
    new DataView(data.buffer).setFloat32(1, 1.5, true);
    new DataView(data.buffer).setFloat64(5, -0.25, true);
    const file = build(
      {
        a: { dtype: "I8", shape: [1], data_offsets: [0, 1] },
        b: { dtype: "F32", shape: [1], data_offsets: [1, 5] },
        c: { dtype: "F64", shape: [1], data_offsets: [5, 13] },
      },
      data,
    );
    // Also from an odd offset inside a bigger buffer, as a slice of a network read would be.
    const holder = new Uint8Array(file.length + 3);
    holder.set(file, 3);
    for (const bytes of [file, holder.subarray(3)]) {
      const { tensors } = parseSafetensors(bytes, "unaligned.safetensors");
      expect([...tensors.get("a")!.data]).toEqual([127]);
      expect([...tensors.get("b")!.data]).toEqual([1.5]);
      expect([...tensors.get("c")!.data]).toEqual([-0.25]);
    }
  });
});

describe("validation of files", () => {
  const F = "bad.safetensors";
  const ok = { t: { dtype: "F32", shape: [2], data_offsets: [0, 8] } };

  function fails(bytes: Uint8Array, ...parts: (string | RegExp)[]): void {
    let caught: unknown;
    try {
      parseSafetensors(bytes, F);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(SafetensorsError);
    const msg = (caught as Error).message;
    expect(msg).toContain(F);
    for (const p of parts) {
      if (typeof p === "string") expect(msg).toContain(p);
      else expect(msg).toMatch(p);
    }
  }

  it("accepts the valid base case", () => {
    expect(parseSafetensors(build(ok, 8), F).tensors.get("t")!.shape).toEqual([2]);
  });

  it("file shorter than 8 bytes", () => {
    fails(new Uint8Array(5), "5 bytes", "shorter than the 8-byte");
  });

  it("header length beyond the file", () => {
    const file = build(ok, 8);
    new DataView(file.buffer).setBigUint64(0, 10_000n, true);
    fails(file, "header length 10000", `${file.length} bytes`);
  });

  it("header not valid JSON, or not an object", () => {
    fails(build('{"t": {"dtype": '), "not valid UTF-8 JSON");
    fails(build("[1, 2]"), "must be a JSON object", "array");
    fails(build("42"), "must be a JSON object");
    const invalidUtf8 = build("{}");
    invalidUtf8[9] = 0xff;
    fails(invalidUtf8, "not valid UTF-8 JSON");
  });

  it("unknown dtype, naming it and the supported ones", () => {
    fails(
      build({ t: { dtype: "F8_E4M3", shape: [2], data_offsets: [0, 2] } }, 2),
      'tensor "t"',
      '"F8_E4M3"',
      "F64",
      "BF16",
      "BOOL",
    );
  });

  it("shape not a list of non-negative integers", () => {
    for (const shape of [[2, -1], [1.5], "2", [null]]) {
      fails(
        build({ t: { dtype: "F32", shape, data_offsets: [0, 8] } }, 8),
        'tensor "t"',
        "shape",
        JSON.stringify(shape),
      );
    }
  });

  it("data_offsets not [begin, end] integers with begin <= end", () => {
    for (const offs of [[8, 0], [0], [0, 8, 16], ["0", 8], [0, 8.5], [-1, 7]]) {
      fails(
        build({ t: { dtype: "F32", shape: [2], data_offsets: offs } }, 8),
        'tensor "t"',
        "data_offsets",
        JSON.stringify(offs),
      );
    }
  });

  it("offsets beyond the data buffer (the header lies)", () => {
    fails(
      build({ t: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, 8),
      'tensor "t"',
      "[0, 16]",
      "8 bytes",
    );
  });

  it("byte length different from product(shape) × dtype size", () => {
    fails(
      build({ t: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, 8),
      'tensor "t"',
      "8 bytes",
      "3 × 4 = 12",
    );
  });

  it("overlapping tensors", () => {
    fails(
      build(
        {
          a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
          b: { dtype: "F32", shape: [1], data_offsets: [4, 8] },
        },
        8,
      ),
      /tensor "b".*overlaps tensor "a"/,
    );
  });

  it("gaps in the data buffer, between tensors or at the end", () => {
    fails(
      build(
        {
          a: { dtype: "F32", shape: [1], data_offsets: [0, 4] },
          b: { dtype: "F32", shape: [1], data_offsets: [8, 12] },
        },
        12,
      ),
      "gap of 4 unused bytes",
      'tensor "b"',
    );
    fails(build(ok, 12), "4 unused bytes at the end", 'after tensor "t"');
    fails(build({ a: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }, 8), "gap of 4", 'tensor "a"');
  });

  it("metadata values that are not strings", () => {
    fails(build({ __metadata__: { task: 3 }, ...ok }, 8), 'metadata value "task"', "3");
    fails(build({ __metadata__: ["x"], ...ok }, 8), "__metadata__");
  });

  it("names the path when reading from disk, also for the header-only reader", async () => {
    const path = join(dir, "lying.safetensors");
    await writeFile(path, build({ t: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, 8));
    await expect(readSafetensors(path)).rejects.toThrow(
      new RegExp(`${path}.*tensor "t".*beyond the data buffer`),
    );
    await expect(readSafetensorsHeader(path)).rejects.toThrow(
      new RegExp(`${path}.*tensor "t".*beyond the data buffer`),
    );
    const tiny = join(dir, "tiny.safetensors");
    await writeFile(tiny, new Uint8Array(3));
    await expect(readSafetensorsHeader(tiny)).rejects.toThrow(/tiny\.safetensors.*3 bytes/);
  });
});

describe("validation when writing", () => {
  const cases: [string, Record<string, StTensor>, string[]][] = [
    [
      "length mismatch",
      { w: { dtype: "F32", shape: [2, 3], data: new Float32Array(5) } },
      ['"w"', "5 elements", "needs 6"],
    ],
    [
      "dtype/array mismatch",
      { w: { dtype: "F32", shape: [2], data: new Float64Array(2) } },
      ['"w"', "Float32Array", "Float64Array"],
    ],
    [
      "I64 needs BigInt64Array",
      { w: { dtype: "I64", shape: [1], data: new Int32Array(1) } },
      ['"w"', "BigInt64Array"],
    ],
    [
      "bad shape",
      { w: { dtype: "U8", shape: [-1], data: new Uint8Array(0) } },
      ['"w"', "non-negative integers"],
    ],
    [
      "bool values",
      { w: { dtype: "BOOL", shape: [2], data: new Uint8Array([1, 2]) } },
      ['"w"', "BOOL value 2"],
    ],
    [
      "unknown dtype",
      { w: { dtype: "U16" as "U8", shape: [1], data: new Uint8Array(1) } },
      ['"w"', "U16", "supported"],
    ],
    ["reserved name", { __metadata__: { dtype: "U8", shape: [1], data: new Uint8Array(1) } }, ["reserved"]],
  ];
  for (const [what, tensors, parts] of cases) {
    it(what, () => {
      let msg = "";
      try {
        serializeSafetensors(tensors);
      } catch (err) {
        expect(err).toBeInstanceOf(SafetensorsError);
        msg = (err as Error).message;
      }
      for (const p of parts) expect(msg).toContain(p);
    });
  }

  it("rejects non-string metadata", () => {
    expect(() => serializeSafetensors({}, { n: 1 as unknown as string })).toThrow(/metadata value "n"/);
  });
});

describe("atomic writes", () => {
  const good = { x: { dtype: "F32" as const, shape: [1], data: new Float32Array([1]) } };

  it("leaves no file and no temp file when serialization fails", async () => {
    const path = join(dir, "sub", "ckpt.safetensors");
    await expect(
      writeSafetensors(path, { ...good, y: { dtype: "F32", shape: [3], data: new Float32Array(2) } }),
    ).rejects.toThrow(SafetensorsError);
    const entries = await readdir(dir, { recursive: true });
    expect(entries.filter((e) => e.includes("ckpt"))).toEqual([]);
  });

  it("keeps an existing target untouched when a write fails midway, and removes the temp file", async () => {
    const path = join(dir, "ckpt.safetensors");
    await writeSafetensors(path, good, { v: "1" });
    const before = await readFile(path);
    await expect(
      writeSafetensors(path, {
        ...good,
        y: { dtype: "I32", shape: [1], data: new Float32Array(1) as unknown as Int32Array },
      }),
    ).rejects.toThrow(SafetensorsError);
    // A failure after some bytes were already written to the temp file.
    const chunks = serializeSafetensors({ z: { dtype: "U8", shape: [4], data: new Uint8Array(4) } });
    await expect(writeFileAtomic(path, [chunks[0], null as unknown as Uint8Array])).rejects.toThrow(
      TypeError,
    );
    expect(Buffer.compare(await readFile(path), before)).toBe(0);
    expect(await readdir(dir)).toEqual(["ckpt.safetensors"]);
    expect((await readSafetensors(path)).metadata).toEqual({ v: "1" });
  });

  it("removes the temp file when the final rename fails", async () => {
    const path = join(dir, "occupied");
    await mkdir(join(path, "child"), { recursive: true });
    await expect(writeFileAtomic(path, "data")).rejects.toThrow();
    expect((await readdir(dir)).sort()).toEqual(["occupied"]);
  });

  it("creates missing folders and replaces the target", async () => {
    const path = join(dir, "a", "b", "out.txt");
    await writeFileAtomic(path, "first");
    await writeFileAtomic(path, [Buffer.from("sec"), new Uint8Array([0x6f, 0x6e, 0x64])]);
    expect(await readFile(path, "utf8")).toBe("second");
    expect(await readdir(join(dir, "a", "b"))).toEqual(["out.txt"]);
  });
});
