import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { zipSync } from "fflate";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { NpyError, parseNpy, readNpz } from "../../common/npy.js";
import { readSafetensors } from "../../common/safetensors.js";

const REF = "test/fixtures/reference";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "npz-test-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** An .npy file as numpy writes it: magic, version, header length, a dict header padded to 64 bytes. */
function npy(header: string, data: Uint8Array, version: 1 | 2 | 3 = 1): Uint8Array {
  const prefix = version === 1 ? 10 : 12;
  let text = header;
  while ((prefix + Buffer.byteLength(text) + 1) % 64 !== 0) text += " ";
  text += "\n";
  const h = Buffer.from(text, version === 3 ? "utf8" : "latin1");
  const out = new Uint8Array(prefix + h.length + data.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0]);
  const dv = new DataView(out.buffer);
  if (version === 1) dv.setUint16(8, h.length, true);
  else dv.setUint32(8, h.length, true);
  out.set(h, prefix);
  out.set(data, prefix + h.length);
  return out;
}

function f32le(xs: number[]): Uint8Array {
  return bytesOf(4 * xs.length, (dv) => {
    for (const [i, x] of xs.entries()) dv.setFloat32(4 * i, x, true);
  });
}

function f64le(xs: number[]): Uint8Array {
  return bytesOf(8 * xs.length, (dv) => {
    for (const [i, x] of xs.entries()) dv.setFloat64(8 * i, x, true);
  });
}

function bytesOf(n: number, write: (dv: DataView) => void): Uint8Array {
  const out = new Uint8Array(n);
  write(new DataView(out.buffer));
  return out;
}

describe("parseNpy", () => {
  it("reads a v1.0 little-endian float32 array in C order", () => {
    const data = f32le([1, 2, 3, 4, 5, 6.5]);
    const a = parseNpy(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", data), "a.npy");
    expect(a.dtype).toBe("<f4");
    expect(a.shape).toEqual([2, 3]);
    expect(a.fortranOrder).toBe(false);
    expect(a.data).toBeInstanceOf(Float32Array);
    expect([...a.data]).toEqual([1, 2, 3, 4, 5, 6.5]);
  });

  it("converts Fortran order to C order", () => {
    // [[1, 2, 3], [4, 5, 6]] stored column by column.
    const col = f64le([1, 4, 2, 5, 3, 6]);
    const a = parseNpy(npy("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }", col), "f.npy");
    expect(a.fortranOrder).toBe(true);
    expect(a.data).toBeInstanceOf(Float64Array);
    expect([...a.data]).toEqual([1, 2, 3, 4, 5, 6]);

    // 3-D: element (i, j, k) of a (2, 3, 4) array sits at i + 2j + 6k in Fortran order; store that index.
    const f = new Int32Array(24).map((_, n) => n);
    const b = parseNpy(
      npy("{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3, 4), }", new Uint8Array(f.buffer)),
      "f3.npy",
    );
    const expected: number[] = [];
    for (let i = 0; i < 2; i++)
      for (let j = 0; j < 3; j++) for (let k = 0; k < 4; k++) expected.push(i + 2 * j + 6 * k);
    expect([...b.data]).toEqual(expected);
  });

  it("converts big-endian data", () => {
    const f4 = parseNpy(
      npy(
        "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }",
        bytesOf(8, (dv) => {
          dv.setFloat32(0, 1.25, false);
          dv.setFloat32(4, -3, false);
        }),
      ),
      "be.npy",
    );
    expect([...f4.data]).toEqual([1.25, -3]);
    const i8 = parseNpy(
      npy(
        "{'descr': '>i8', 'fortran_order': False, 'shape': (1,), }",
        bytesOf(8, (dv) => dv.setBigInt64(0, -5n, false)),
      ),
      "be8.npy",
    );
    expect(i8.data).toBeInstanceOf(BigInt64Array);
    expect([...i8.data]).toEqual([-5n]);
    const i2 = parseNpy(
      npy(
        "{'descr': '>i2', 'fortran_order': False, 'shape': (2,), }",
        new Uint8Array([0x01, 0x02, 0xff, 0xfe]),
      ),
      "be2.npy",
    );
    expect([...i2.data]).toEqual([0x0102, -2]);
    const f2 = parseNpy(
      npy(
        "{'descr': '>f2', 'fortran_order': False, 'shape': (2,), }",
        new Uint8Array([0x3c, 0x00, 0xc0, 0x00]),
      ),
      "be16.npy",
    );
    expect([...f2.data]).toEqual([1, -2]);
  });

  it("widens float16 and reads the one-byte types", () => {
    const f2 = parseNpy(
      npy(
        "{'descr': '<f2', 'fortran_order': False, 'shape': (3,), }",
        new Uint8Array([0x00, 0x3c, 0x01, 0x00, 0x00, 0x7c]),
      ),
      "h.npy",
    );
    expect(f2.data).toBeInstanceOf(Float32Array);
    expect([...f2.data]).toEqual([1, 2 ** -24, Number.POSITIVE_INFINITY]);
    const b1 = parseNpy(
      npy("{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }", new Uint8Array([1, 0])),
      "b.npy",
    );
    expect(b1.data).toBeInstanceOf(Uint8Array);
    expect([...b1.data]).toEqual([1, 0]);
    const i1 = parseNpy(
      npy("{'descr': '|i1', 'fortran_order': False, 'shape': (2,), }", new Uint8Array([0xff, 5])),
      "i.npy",
    );
    expect([...i1.data]).toEqual([-1, 5]);
    const u1 = parseNpy(
      npy("{'descr': '|u1', 'fortran_order': False, 'shape': (), }", new Uint8Array([200])),
      "u.npy",
    );
    expect(u1.shape).toEqual([]);
    expect([...u1.data]).toEqual([200]);
  });

  it("reads format versions 2.0 and 3.0 and empty arrays", () => {
    const data = bytesOf(8, (dv) => dv.setFloat64(0, 2.5, true));
    for (const v of [2, 3] as const) {
      const a = parseNpy(
        npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1), }", data, v),
        `v${v}.npy`,
      );
      expect([...a.data]).toEqual([2.5]);
      expect(a.shape).toEqual([1, 1]);
    }
    const e = parseNpy(
      npy("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 5), }", new Uint8Array(0)),
      "e.npy",
    );
    expect(e.shape).toEqual([0, 5]);
    expect(e.data.length).toBe(0);
  });

  it("copies arrays whose data are not aligned in the buffer", () => {
    const file = npy(
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
      bytesOf(8, (dv) => {
        dv.setFloat32(0, 7, true);
        dv.setFloat32(4, 8, true);
      }),
    );
    const holder = new Uint8Array(file.length + 1);
    holder.set(file, 1);
    expect([...parseNpy(holder.subarray(1), "odd.npy").data]).toEqual([7, 8]);
  });

  it("rejects bad magic, unknown versions, unsupported dtypes and wrong data sizes, naming the source", () => {
    const f4 = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
    const cases: [Uint8Array, RegExp][] = [
      [new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]), /x\.npy: not an \.npy array \(bad magic/],
      [new Uint8Array(4), /x\.npy: not an \.npy array/],
      [
        (() => {
          const b = npy(f4, new Uint8Array(8));
          b[6] = 4;
          return b;
        })(),
        /x\.npy: unsupported \.npy format version 4\.0/,
      ],
      [
        npy("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", new Uint8Array(8)),
        /x\.npy: unsupported dtype "<c8" \(supported: <f4/,
      ],
      [
        npy("{'descr': '<u4', 'fortran_order': False, 'shape': (1,), }", new Uint8Array(4)),
        /x\.npy: unsupported dtype "<u4"/,
      ],
      [
        npy("{'descr': '|f4', 'fortran_order': False, 'shape': (1,), }", new Uint8Array(4)),
        /x\.npy: unsupported dtype "\|f4"/,
      ],
      [
        npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", new Uint8Array(4)),
        /x\.npy: unsupported dtype/,
      ],
      [
        npy(f4, new Uint8Array(6)),
        /x\.npy: data size mismatch: shape \[2\] of <f4 needs 2 × 4 = 8 bytes, the file has 6/,
      ],
      [npy(f4, new Uint8Array(12)), /x\.npy: data size mismatch.*the file has 12/],
      [npy("{'descr': '<f4', 'shape': (2,), }", new Uint8Array(8)), /x\.npy: .*fortran_order/],
      [
        npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -1), }", new Uint8Array(8)),
        /x\.npy: .*shape/,
      ],
      [npy("{'descr': '<f4', 'fortran_order': False", new Uint8Array(8)), /x\.npy: unreadable \.npy header/],
    ];
    for (const [bytes, re] of cases) {
      expect(() => parseNpy(bytes, "x.npy")).toThrow(re);
      expect(() => parseNpy(bytes, "x.npy")).toThrow(NpyError);
    }
  });
});

/** A hand-built zip of stored entries; `zip64` writes the sizes and offsets the way >4 GiB archives must. */
function storedZip(entries: [string, Uint8Array][], zip64: boolean): Uint8Array {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const [name, data] of entries) {
    const nm = Buffer.from(name, "utf8");
    const crc = crc32(data) >>> 0;
    const local = bytesOf(30, (dv) => {
      dv.setUint32(0, 0x04034b50, true);
      dv.setUint16(4, 45, true);
      dv.setUint16(8, 0, true); // stored
      dv.setUint32(14, crc, true);
      dv.setUint32(18, data.length, true);
      dv.setUint32(22, data.length, true);
      dv.setUint16(26, nm.length, true);
    });
    const extra = zip64
      ? bytesOf(28, (dv) => {
          dv.setUint16(0, 0x0001, true);
          dv.setUint16(2, 24, true);
          dv.setBigUint64(4, BigInt(data.length), true);
          dv.setBigUint64(12, BigInt(data.length), true);
          dv.setBigUint64(20, BigInt(offset), true);
        })
      : new Uint8Array(0);
    const cd = bytesOf(46, (dv) => {
      dv.setUint32(0, 0x02014b50, true);
      dv.setUint16(4, 45, true);
      dv.setUint16(6, 45, true);
      dv.setUint32(16, crc, true);
      dv.setUint32(20, zip64 ? 0xffffffff : data.length, true);
      dv.setUint32(24, zip64 ? 0xffffffff : data.length, true);
      dv.setUint16(28, nm.length, true);
      dv.setUint16(30, extra.length, true);
      dv.setUint32(42, zip64 ? 0xffffffff : offset, true);
    });
    parts.push(local, nm, data);
    central.push(cd, nm, extra);
    offset += local.length + nm.length + data.length;
  }
  const cdSize = central.reduce((n, c) => n + c.length, 0);
  const tail: Uint8Array[] = [];
  if (zip64) {
    tail.push(
      bytesOf(56, (dv) => {
        dv.setUint32(0, 0x06064b50, true);
        dv.setBigUint64(4, 44n, true);
        dv.setBigUint64(24, BigInt(entries.length), true);
        dv.setBigUint64(32, BigInt(entries.length), true);
        dv.setBigUint64(40, BigInt(cdSize), true);
        dv.setBigUint64(48, BigInt(offset), true);
      }),
      bytesOf(20, (dv) => {
        dv.setUint32(0, 0x07064b50, true);
        dv.setBigUint64(8, BigInt(offset + cdSize), true);
        dv.setUint32(16, 1, true);
      }),
    );
  }
  tail.push(
    bytesOf(22, (dv) => {
      dv.setUint32(0, 0x06054b50, true);
      dv.setUint16(8, zip64 ? 0xffff : entries.length, true);
      dv.setUint16(10, zip64 ? 0xffff : entries.length, true);
      dv.setUint32(12, zip64 ? 0xffffffff : cdSize, true);
      dv.setUint32(16, zip64 ? 0xffffffff : offset, true);
    }),
  );
  return new Uint8Array(Buffer.concat([...parts, ...central, ...tail]));
}

describe("readNpz", () => {
  const scale = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", f32le([0.5, 1, 2]));
  const ids = npy(
    "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }",
    bytesOf(16, (dv) => {
      dv.setBigInt64(0, 7n, true);
      dv.setBigInt64(8, -1n, true);
    }),
  );

  it("reads tiny_vit.npz with the Google ViT names and shapes", async () => {
    const arrays = await readNpz(`${REF}/tiny_vit.npz`);
    expect(arrays.size).toBe(8 + 3 * 16);
    const shapes: Record<string, number[]> = {
      "embedding/kernel": [4, 4, 3, 48],
      "embedding/bias": [48],
      cls: [1, 1, 48],
      "Transformer/posembed_input/pos_embedding": [1, 65, 48],
      "Transformer/encoder_norm/scale": [48],
      "Transformer/encoder_norm/bias": [48],
      "head/kernel": [48, 10],
      "head/bias": [10],
    };
    for (let i = 0; i < 3; i++) {
      const b = `Transformer/encoderblock_${i}`;
      const a = `${b}/MultiHeadDotProductAttention_1`;
      Object.assign(shapes, {
        [`${b}/LayerNorm_0/scale`]: [48],
        [`${b}/LayerNorm_0/bias`]: [48],
        [`${b}/LayerNorm_2/scale`]: [48],
        [`${b}/LayerNorm_2/bias`]: [48],
        [`${a}/query/kernel`]: [48, 3, 16],
        [`${a}/key/kernel`]: [48, 3, 16],
        [`${a}/value/kernel`]: [48, 3, 16],
        [`${a}/query/bias`]: [3, 16],
        [`${a}/key/bias`]: [3, 16],
        [`${a}/value/bias`]: [3, 16],
        [`${a}/out/kernel`]: [3, 16, 48],
        [`${a}/out/bias`]: [48],
        [`${b}/MlpBlock_3/Dense_0/kernel`]: [48, 192],
        [`${b}/MlpBlock_3/Dense_0/bias`]: [192],
        [`${b}/MlpBlock_3/Dense_1/kernel`]: [192, 48],
        [`${b}/MlpBlock_3/Dense_1/bias`]: [48],
      });
    }
    expect(Object.fromEntries([...arrays].map(([n, a]) => [n, a.shape]))).toEqual(shapes);
    for (const [name, a] of arrays) {
      expect(a.dtype, name).toBe("<f4");
      expect(a.data, name).toBeInstanceOf(Float32Array);
    }
    // Arrays stored unchanged under both names must agree to the bit with the safetensors file.
    const st = (await readSafetensors(`${REF}/tiny_vit.safetensors`)).tensors;
    expect(arrays.get("cls")!.data).toEqual(st.get("cls_token")!.data);
    expect(arrays.get("Transformer/posembed_input/pos_embedding")!.data).toEqual(st.get("pos_embed")!.data);
    expect(arrays.get("Transformer/encoderblock_1/LayerNorm_2/scale")!.data).toEqual(
      st.get("blocks.1.norm2.weight")!.data,
    );
  });

  it("reads stored and deflated entries with nested names, ignoring non-.npy entries", async () => {
    const zip = zipSync({
      "Transformer/encoderblock_0/LayerNorm_0/scale.npy": [scale, { level: 0 }],
      "ids.npy": [ids, { level: 9 }],
      "README.txt": [new Uint8Array([104, 105]), { level: 0 }],
    });
    const path = join(dir, "a.npz");
    await writeFile(path, zip);
    const arrays = await readNpz(path);
    expect([...arrays.keys()].sort()).toEqual(["Transformer/encoderblock_0/LayerNorm_0/scale", "ids"]);
    expect([...arrays.get("Transformer/encoderblock_0/LayerNorm_0/scale")!.data]).toEqual([0.5, 1, 2]);
    expect([...arrays.get("ids")!.data]).toEqual([7n, -1n]);
  });

  it("reads ZIP64 archives", async () => {
    for (const zip64 of [false, true]) {
      const path = join(dir, `z${zip64}.npz`);
      await writeFile(
        path,
        storedZip(
          [
            ["x.npy", scale],
            ["d/y.npy", ids],
          ],
          zip64,
        ),
      );
      const arrays = await readNpz(path);
      expect([...arrays.get("x")!.data], `zip64=${zip64}`).toEqual([0.5, 1, 2]);
      expect([...arrays.get("d/y")!.data], `zip64=${zip64}`).toEqual([7n, -1n]);
    }
  });

  it("names the file and the entry in errors", async () => {
    const notZip = join(dir, "plain.npz");
    await writeFile(notZip, new Uint8Array(100).fill(7));
    await expect(readNpz(notZip)).rejects.toThrow(/plain\.npz: not a valid \.npz \(zip\) archive/);

    const corrupt = storedZip([["w.npy", scale]], false);
    corrupt[30 + "w.npy".length + scale.length - 1] ^= 0xff; // last byte of the entry: part of the last value
    const corruptPath = join(dir, "corrupt.npz");
    await writeFile(corruptPath, corrupt);
    await expect(readNpz(corruptPath)).rejects.toThrow(/corrupt\.npz: entry "w\.npy": CRC-32 mismatch/);

    const badNpy = join(dir, "badnpy.npz");
    await writeFile(badNpy, zipSync({ "w.npy": new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) }));
    await expect(readNpz(badNpy)).rejects.toThrow(
      /badnpy\.npz: entry "w\.npy": not an \.npy array \(bad magic/,
    );

    const badDtype = join(dir, "dtype.npz");
    const c8 = npy("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", new Uint8Array(8));
    await writeFile(badDtype, zipSync({ "q/z.npy": c8 }));
    await expect(readNpz(badDtype)).rejects.toThrow(/dtype\.npz: entry "q\/z\.npy": unsupported dtype "<c8"/);

    const short = join(dir, "short.npz");
    await writeFile(short, zipSync({ "s.npy": scale.subarray(0, scale.length - 4) }));
    await expect(readNpz(short)).rejects.toThrow(/short\.npz: entry "s\.npy": data size mismatch/);
  });
});
