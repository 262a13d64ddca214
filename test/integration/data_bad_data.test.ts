import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DataError } from "../../common/data/errors.js";
import { openDatasetIndex } from "../../common/data/open_index.js";
import type { DataOptions } from "../../common/data/options.js";
import { decodeBmp } from "../../worker/data/decode_bmp.js";
import { openDataset } from "../../worker/data/open_dataset.js";

const temps: string[] = [];
afterAll(() => {
  for (const t of temps) rmSync(t, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "inflora-bad-"));
  temps.push(d);
  return d;
}

function snapshot(dir: string): string {
  const lines: string[] = [];
  const walk = (d: string) => {
    const names = readdirSync(d).sort();
    lines.push(`${d}/ [${names.join(",")}] ${statSync(d).mtimeMs}`);
    for (const name of names) {
      const p = join(d, name);
      const s = statSync(p);
      if (s.isDirectory()) walk(p);
      else
        lines.push(
          `${p} ${s.size} ${s.mtimeMs} ${createHash("sha256").update(readFileSync(p)).digest("hex")}`,
        );
    }
  };
  walk(dir);
  return lines.join("\n");
}

/** Expects a DataError whose message names `file` (and matches `pattern`). */
async function rejectsNaming(p: Promise<unknown>, file: string, pattern: RegExp): Promise<void> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, "expected a DataError").toBeInstanceOf(DataError);
  expect((e as Error).message).toContain(file);
  expect((e as Error).message).toMatch(pattern);
}

async function png(file: string, value: number, size = 8): Promise<void> {
  await sharp({
    create: { width: size, height: size, channels: 3, background: { r: value, g: value, b: value } },
  })
    .png()
    .toFile(file);
}

describe("missing data", () => {
  it.each(["cifar100", "idx", "folder", "imagenet_r", "domainnet"])(
    "%s: a missing folder is named",
    async (dataset) => {
      const missing = join(tempDir(), "nope");
      await rejectsNaming(
        openDatasetIndex({ dataset, dataPath: missing, imageSize: 8 }),
        missing,
        /does not exist/,
      );
    },
  );

  it("a missing CIFAR file, IDX file, test folder or DomainNet list is named", async () => {
    const cifar = tempDir();
    writeFileSync(join(cifar, "train.bin"), Buffer.alloc(3074));
    await rejectsNaming(
      openDatasetIndex({ dataset: "cifar100", dataPath: cifar, imageSize: 8 }),
      join(cifar, "test.bin"),
      /missing/,
    );
    const idx = tempDir();
    await rejectsNaming(
      openDatasetIndex({ dataset: "idx", dataPath: idx, imageSize: 8 }),
      idx,
      /train-labels-idx1-ubyte/,
    );
    const folder = tempDir();
    mkdirSync(join(folder, "train/a"), { recursive: true });
    await png(join(folder, "train/a/x.png"), 1);
    await rejectsNaming(
      openDatasetIndex({ dataset: "folder", dataPath: folder, imageSize: 8 }),
      join(folder, "test"),
      /does not exist/,
    );
  });

  it("an unknown dataset name and a relative path are refused", async () => {
    await expect(openDatasetIndex({ dataset: "mnist", dataPath: "/x", imageSize: 8 })).rejects.toThrow(
      /unknown dataset "mnist"/,
    );
    await expect(openDatasetIndex({ dataset: "folder", dataPath: "rel/path", imageSize: 8 })).rejects.toThrow(
      /absolute/,
    );
  });
});

describe("empty classes", () => {
  it("folder and raw ImageNet-R: a class folder without images is named", async () => {
    const root = tempDir();
    for (const p of ["train/a", "train/b", "test/a"]) mkdirSync(join(root, p), { recursive: true });
    await png(join(root, "train/a/x.png"), 1);
    await png(join(root, "test/a/x.png"), 1);
    writeFileSync(join(root, "train/b/readme.txt"), "no images here");
    await rejectsNaming(
      openDatasetIndex({ dataset: "folder", dataPath: root, imageSize: 8 }),
      join(root, "train/b"),
      /empty class/,
    );
    const raw = tempDir();
    mkdirSync(join(raw, "n01"));
    mkdirSync(join(raw, "n02"));
    await png(join(raw, "n01/x.png"), 1);
    await rejectsNaming(
      openDatasetIndex({ dataset: "imagenet_r", dataPath: raw, imageSize: 8 }),
      join(raw, "n02"),
      /empty class/,
    );
  });

  it("a test class unknown to training is named", async () => {
    const root = tempDir();
    for (const p of ["train/a", "test/zz"]) mkdirSync(join(root, p), { recursive: true });
    await png(join(root, "train/a/x.png"), 1);
    await png(join(root, "test/zz/x.png"), 1);
    await rejectsNaming(
      openDatasetIndex({ dataset: "folder", dataPath: root, imageSize: 8 }),
      join(root, "test/zz"),
      /no counterpart/,
    );
  });
});

describe("wrong record sizes", () => {
  it("CIFAR binary: a size that is not a multiple of 3074 bytes", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "train.bin"), Buffer.alloc(3074 * 2 + 5));
    writeFileSync(join(dir, "test.bin"), Buffer.alloc(3074));
    await rejectsNaming(
      openDatasetIndex({ dataset: "cifar100", dataPath: dir, imageSize: 8 }),
      join(dir, "train.bin"),
      /wrong record size.*3074/,
    );
  });

  it("IDX: a header that does not match the data, or a bad magic", async () => {
    const dir = tempDir();
    const labels = Buffer.alloc(8 + 3);
    labels.writeUInt32BE(0x801, 0);
    labels.writeUInt32BE(4, 4); // says 4, holds 3
    writeFileSync(join(dir, "train-labels-idx1-ubyte"), labels);
    writeFileSync(join(dir, "train-images-idx3-ubyte"), Buffer.alloc(16));
    await rejectsNaming(
      openDatasetIndex({ dataset: "idx", dataPath: dir, imageSize: 8 }),
      join(dir, "train-labels-idx1-ubyte"),
      /wrong record size/,
    );
    writeFileSync(join(dir, "train-labels-idx1-ubyte"), Buffer.from("hello world"));
    await rejectsNaming(
      openDatasetIndex({ dataset: "idx", dataPath: dir, imageSize: 8 }),
      join(dir, "train-labels-idx1-ubyte"),
      /magic/,
    );
  });

  it("CIFAR pickle: data rows of the wrong width, a truncated file, a refused global", async () => {
    const dir = tempDir();
    // {'data': b'\x00' * 10, 'fine_labels': [1]} at protocol 3
    const dict = (data: number[]) =>
      Buffer.from([
        0x80,
        0x03,
        0x7d,
        0x28,
        0x58,
        4,
        0,
        0,
        0,
        ...Buffer.from("data"),
        0x43,
        data.length,
        ...data,
        0x58,
        11,
        0,
        0,
        0,
        ...Buffer.from("fine_labels"),
        0x5d,
        0x4b,
        1,
        0x61,
        0x75,
        0x2e,
      ]);
    writeFileSync(join(dir, "train"), dict(new Array(10).fill(0)));
    writeFileSync(join(dir, "test"), dict(new Array(10).fill(0)));
    await rejectsNaming(
      openDatasetIndex({ dataset: "cifar100", dataPath: dir, imageSize: 8 }),
      join(dir, "train"),
      /wrong record size/,
    );
    writeFileSync(join(dir, "train"), dict(new Array(10).fill(0)).subarray(0, 20));
    await rejectsNaming(
      openDatasetIndex({ dataset: "cifar100", dataPath: dir, imageSize: 8 }),
      join(dir, "train"),
      /truncated/,
    );
    // cos\nsystem\n(S'echo hi'\ntR. — the classic code-execution pickle
    writeFileSync(join(dir, "train"), Buffer.from("cos\nsystem\n(S'echo hi'\ntR.", "latin1"));
    await rejectsNaming(
      openDatasetIndex({ dataset: "cifar100", dataPath: dir, imageSize: 8 }),
      join(dir, "train"),
      /refusing global os\.system/,
    );
  });
});

describe("labels out of range", () => {
  it("CIFAR: a test label that is no training class", async () => {
    const dir = tempDir();
    const rec = (fine: number) => {
      const b = Buffer.alloc(3074);
      b[1] = fine;
      return b;
    };
    writeFileSync(join(dir, "train.bin"), Buffer.concat([rec(0), rec(1)]));
    writeFileSync(join(dir, "test.bin"), Buffer.concat([rec(1), rec(7)]));
    await rejectsNaming(
      openDatasetIndex({ dataset: "cifar100", dataPath: dir, imageSize: 8 }),
      join(dir, "test.bin"),
      /label 7 of sample 1 is out of range.*0\.\.1/,
    );
  });

  it("DomainNet: a label ≥ 345, a malformed line, an inconsistent class", async () => {
    const root = tempDir();
    mkdirSync(join(root, "real/cat"), { recursive: true });
    await png(join(root, "real/cat/1.png"), 1);
    const opts = { dataset: "domainnet", dataPath: root, imageSize: 8, domains: ["real"] };
    writeFileSync(join(root, "real_test.txt"), "real/cat/1.png 3\n");
    writeFileSync(join(root, "real_train.txt"), "real/cat/1.png 3\nreal/cat/1.png 345\n");
    await rejectsNaming(
      openDatasetIndex(opts),
      `${join(root, "real_train.txt")}:2`,
      /label out of range: 345/,
    );
    writeFileSync(join(root, "real_train.txt"), "real/cat/1.png\n");
    await rejectsNaming(openDatasetIndex(opts), `${join(root, "real_train.txt")}:1`, /path label/);
    writeFileSync(join(root, "real_train.txt"), "real/cat/1.png 3\nreal/cat/1.png 4\n");
    await rejectsNaming(
      openDatasetIndex(opts),
      `${join(root, "real_train.txt")}:2`,
      /class "cat" has label 4/,
    );
    writeFileSync(join(root, "real_train.txt"), "../etc/passwd 3\n");
    await rejectsNaming(openDatasetIndex(opts), `${join(root, "real_train.txt")}:1`, /domain\/class\/file/);
  });
});

describe("unreadable images", () => {
  let root: string;
  let before: string;
  const base = (): DataOptions => ({ dataset: "folder", dataPath: root, imageSize: 8 });

  beforeAll(async () => {
    root = tempDir();
    for (const p of ["train/a", "test/a"]) mkdirSync(join(root, p), { recursive: true });
    await png(join(root, "train/a/0.png"), 10);
    writeFileSync(join(root, "train/a/1.png"), "this is not a PNG");
    const jpeg = await sharp({ create: { width: 64, height: 64, channels: 3, background: "#123456" } })
      .jpeg()
      .toBuffer();
    writeFileSync(join(root, "train/a/2.jpg"), jpeg.subarray(0, jpeg.length >> 1)); // truncated
    await png(join(root, "train/a/3.png"), 30);
    await png(join(root, "test/a/0.png"), 40);
    before = snapshot(root);
  });

  it.each([0, 2])("fail the load and name the file (threads: %i)", async (threads) => {
    const ds = await openDataset({ ...base(), threads });
    try {
      await rejectsNaming(
        ds.load("train", [0, 1], { augment: false }),
        join(root, "train/a/1.png"),
        /unreadable image/,
      );
      await rejectsNaming(
        ds.load("train", [2, 3], { augment: false }),
        join(root, "train/a/2.jpg"),
        /unreadable image/,
      );
      expect(ds.badImages).toBe(0);
    } finally {
      await ds.close();
    }
  });

  it.each([0, 2])(
    "with onBadImage 'skip': warn, count, and return zeros for them (threads: %i)",
    async (threads) => {
      const warnings: string[] = [];
      const ds = await openDataset({ ...base(), threads, onBadImage: "skip", warn: (m) => warnings.push(m) });
      try {
        const x = await ds.load("train", [0, 1, 2, 3], { augment: false });
        const F = 3 * 64;
        expect(x[0]).toBe(Math.fround(10 / 255));
        expect(x.subarray(F, 3 * F).every((v) => v === 0)).toBe(true);
        expect(x[3 * F]).toBe(Math.fround(30 / 255));
        expect(ds.badImages).toBe(2);
        expect(warnings.length).toBe(2);
        warnings.sort(); // jobs finish in any order, and so may their warnings
        expect(warnings[0]).toContain(join(root, "train/a/1.png"));
        expect(warnings[1]).toContain(join(root, "train/a/2.jpg"));
        await ds.load("train", [1], { augment: true, key: { seed: 0, task: 0, epoch: 0 } });
        expect(ds.badImages).toBe(3);
      } finally {
        await ds.close();
      }
    },
  );

  it("bad requests are refused: index out of range, augmentation without a key, bad options", async () => {
    const ds = await openDataset({ ...base(), threads: 0 });
    try {
      await expect(ds.load("train", [4], { augment: false })).rejects.toThrow(
        /sample index 4 out of range for the train split \(4 samples\)/,
      );
      await expect(ds.load("test", [-1], { augment: false })).rejects.toThrow(/out of range/);
      await expect(ds.load("train", [0], { augment: true })).rejects.toThrow(/requires a key/);
    } finally {
      await ds.close();
    }
    await expect(openDataset({ ...base(), imageSize: 0 })).rejects.toThrow(/image size/);
    await expect(openDataset({ ...base(), mean: [0, 0, 0] })).rejects.toThrow(/together/);
    await expect(openDataset({ ...base(), mean: [0, 0, 0], std: [1, 0, 1] })).rejects.toThrow(/std/);
  });

  it("never wrote into the dataset folder", () => {
    expect(snapshot(root)).toBe(before);
  });
});

describe("BMP files (which libvips cannot read)", () => {
  /** A BMP written by the book: BGR(A) rows padded to 4 bytes, bottom-up unless `topDown`. */
  function bmp(
    w: number,
    h: number,
    bpp: 8 | 24 | 32,
    px: (x: number, y: number) => number[],
    topDown = false,
  ): Buffer {
    const palette = bpp === 8 ? 256 * 4 : 0;
    const stride = Math.floor((bpp * w + 31) / 32) * 4;
    const offset = 54 + palette;
    const b = Buffer.alloc(offset + stride * h);
    b.write("BM", 0, "latin1");
    b.writeUInt32LE(b.length, 2);
    b.writeUInt32LE(offset, 10);
    b.writeUInt32LE(40, 14);
    b.writeInt32LE(w, 18);
    b.writeInt32LE(topDown ? -h : h, 22);
    b.writeUInt16LE(1, 26);
    b.writeUInt16LE(bpp, 28);
    for (let i = 0; i < (bpp === 8 ? 256 : 0); i++) {
      // palette entry i: B = i, G = 255 − i, R = i/2
      b[54 + i * 4] = i;
      b[54 + i * 4 + 1] = 255 - i;
      b[54 + i * 4 + 2] = i >> 1;
    }
    for (let y = 0; y < h; y++) {
      const row = offset + (topDown ? y : h - 1 - y) * stride;
      for (let x = 0; x < w; x++) {
        const v = px(x, y);
        if (bpp === 8) b[row + x] = v[0];
        else for (let k = 0; k < bpp / 8; k++) b[row + x * (bpp / 8) + k] = v[k];
      }
    }
    return b;
  }

  it("decodes 8-bit palette, 24-bit bottom-up and 32-bit top-down BMPs to RGB", () => {
    const W = 5; // odd width: rows need padding
    const H = 3;
    const p8 = decodeBmp(bmp(W, H, 8, (x, y) => [x * 10 + y]));
    const q24 = decodeBmp(bmp(W, H, 24, (x, y) => [x, y, 200])); // B, G, R
    const r32 = decodeBmp(bmp(W, H, 32, (x, y) => [y, x, 100, 0], true));
    for (const img of [p8, q24, r32]) expect([img.width, img.height, img.channels]).toEqual([W, H, 3]);
    const at = (img: typeof p8, x: number, y: number) => [0, 1, 2].map((c) => img.data[(y * W + x) * 3 + c]);
    // palette index 21 at (2, 1): R = 10, G = 234, B = 21
    expect(at(p8, 2, 1)).toEqual([10, 234, 21]);
    expect(at(q24, 4, 2)).toEqual([200, 2, 4]);
    expect(at(r32, 3, 0)).toEqual([100, 3, 0]);
    expect(() => decodeBmp(Buffer.from("BMnot really"))).toThrow(/truncated/);
  });

  it("are read by folder datasets (.bmp, any case)", async () => {
    const root = tempDir();
    for (const p of ["train/a", "test/a"]) mkdirSync(join(root, p), { recursive: true });
    writeFileSync(
      join(root, "train/a/x.BMP"),
      bmp(4, 4, 24, (x, y) => [x, y, 7]),
    );
    writeFileSync(
      join(root, "test/a/y.bmp"),
      bmp(4, 4, 8, () => [3]),
    );
    const ds = await openDataset({ dataset: "folder", dataPath: root, imageSize: 4, threads: 0 });
    try {
      const x = await ds.load("train", [0], { augment: false });
      // R plane is 7 everywhere, G = row, B = column
      expect(x[0]).toBe(Math.fround(7 / 255));
      expect(x[16 + 4 * 2 + 1]).toBe(Math.fround(2 / 255));
      expect(x[32 + 4 * 2 + 1]).toBe(Math.fround(1 / 255));
    } finally {
      await ds.close();
    }
  });
});
