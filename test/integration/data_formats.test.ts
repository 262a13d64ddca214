import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync, gzipSync } from "node:zlib";
import sharp from "sharp";
import { afterAll, describe, expect, it } from "vitest";
import { openDatasetIndex } from "../../common/data/open_index.js";
import type { DataOptions } from "../../common/data/options.js";
import { openDataset } from "../../worker/data/open_dataset.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const PICKLES = join(ROOT, "test/fixtures/data/cifar100_pickle");
const temps: string[] = [];
afterAll(() => {
  for (const t of temps) rmSync(t, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "inflora-data-"));
  temps.push(d);
  return d;
}

/** Names, sizes, mtimes and hashes of everything under a folder. */
function snapshot(dir: string): string {
  const lines: string[] = [];
  const walk = (d: string) => {
    const names = readdirSync(d).sort();
    lines.push(`${d}/ [${names.join(",")}] ${statSync(d).mtimeMs}`);
    for (const name of names) {
      const p = join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else
        lines.push(
          `${p} ${st.size} ${st.mtimeMs} ${createHash("sha256").update(readFileSync(p)).digest("hex")}`,
        );
    }
  };
  walk(dir);
  return lines.join("\n");
}

async function loadAll(opts: DataOptions, split: "train" | "test", n: number): Promise<Float32Array> {
  const ds = await openDataset(opts);
  try {
    return await ds.load(
      split,
      Array.from({ length: n }, (_, i) => i),
      { augment: false },
    );
  } finally {
    await ds.close();
  }
}

/** The pickle fixtures' pixels: (31·i + 7·j + base) mod 256 (see make.py). */
const formulaPixel = (i: number, j: number, base: number) => (31 * i + 7 * j + base) % 256;

/** A pickle as Python 2's cPickle wrote torchvision's CIFAR files: protocol 2, str keys and data. */
function python2CifarPickle(fine: number[], base: number): Uint8Array {
  const parts: number[] = [];
  const bytes = (...b: number[]) => parts.push(...b);
  const ascii = (s: string) => bytes(...Buffer.from(s, "latin1"));
  const shortStr = (s: string) => {
    bytes(0x55, s.length);
    ascii(s);
  };
  const int = (v: number) => (v < 256 ? bytes(0x4b, v) : bytes(0x4d, v & 0xff, v >> 8));
  const n = fine.length;
  bytes(0x80, 0x02, 0x7d, 0x71, 0x01, 0x28); // PROTO 2, EMPTY_DICT, BINPUT 1, MARK
  shortStr("data");
  ascii("cnumpy.core.multiarray\n_reconstruct\nq\x03cnumpy\nndarray\nq\x04");
  int(0);
  bytes(0x85); // TUPLE1 (0,)
  shortStr("b");
  bytes(0x87, 0x52, 0x71, 0x05, 0x28); // TUPLE3, REDUCE, BINPUT 5, MARK
  int(1);
  int(n);
  int(3072);
  bytes(0x86); // TUPLE2 shape
  ascii("cnumpy\ndtype\nq\x06");
  shortStr("u1");
  int(0);
  int(1);
  bytes(0x87, 0x52, 0x71, 0x07, 0x28); // dtype('u1', 0, 1), MARK
  int(3);
  shortStr("|");
  bytes(0x4e, 0x4e, 0x4e); // None ×3
  bytes(0x4a, 0xff, 0xff, 0xff, 0xff, 0x4a, 0xff, 0xff, 0xff, 0xff); // -1, -1
  int(0);
  bytes(0x74, 0x62); // TUPLE, BUILD (dtype state)
  bytes(0x89); // NEWFALSE: not Fortran
  const size = n * 3072;
  bytes(0x54, size & 0xff, (size >> 8) & 0xff, (size >> 16) & 0xff, size >>> 24); // BINSTRING
  for (let i = 0; i < n; i++) for (let j = 0; j < 3072; j++) bytes(formulaPixel(i, j, base));
  bytes(0x74, 0x62); // TUPLE, BUILD (array state)
  for (const [key, values] of [
    ["fine_labels", fine],
    ["coarse_labels", fine.map((f) => Math.floor(f / 5))],
  ] as const) {
    shortStr(key);
    bytes(0x5d, 0x28); // EMPTY_LIST, MARK
    for (const v of values) int(v);
    bytes(0x65); // APPENDS
  }
  shortStr("filenames");
  bytes(0x5d, 0x71, 0x09, 0x28);
  for (let i = 0; i < n; i++) shortStr(`f${i}.png`);
  bytes(0x65, 0x75, 0x2e); // APPENDS, SETITEMS, STOP
  return Uint8Array.from(parts);
}

describe("cifar100", () => {
  const expectFormula = (x: Float32Array, n: number, base: number) => {
    let wrong = 0;
    for (let i = 0; i < n; i++)
      for (let j = 0; j < 3072; j++)
        if (x[i * 3072 + j] !== Math.fround(formulaPixel(i, j, base) / 255)) wrong++;
    expect(wrong).toBe(0);
  };

  it.each([
    ["protocol 2 from Python 3", join(PICKLES, "p2/cifar-100-python")],
    ["protocol 5 (numpy _frombuffer)", join(PICKLES, "p5/cifar-100-python")],
    ["its parent folder", join(PICKLES, "p2")],
  ])("reads torchvision's pickles: %s", async (_name, dataPath) => {
    const opts = { dataset: "cifar100", dataPath, imageSize: 32 };
    const index = await openDatasetIndex(opts);
    // fine labels train [12, 3, 7], test [7, 12] → classes 3, 7, 12
    expect(index.classNames).toEqual(["3", "7", "12"]);
    expect(Array.from(index.labels("train"))).toEqual([2, 0, 1]);
    expect(Array.from(index.labels("test"))).toEqual([1, 2]);
    expectFormula(await loadAll(opts, "train", 3), 3, 0);
    expectFormula(await loadAll(opts, "test", 2), 2, 100);
  });

  it("reads Python 2 pickles (str keys and data, as the original CIFAR-100 files)", async () => {
    const dir = join(tempDir(), "cifar-100-python");
    mkdirSync(dir);
    writeFileSync(join(dir, "train"), python2CifarPickle([12, 3, 7], 0));
    writeFileSync(join(dir, "test"), python2CifarPickle([7, 12], 100));
    const opts = { dataset: "cifar100", dataPath: dir, imageSize: 32 };
    const index = await openDatasetIndex(opts);
    expect(index.classNames).toEqual(["3", "7", "12"]);
    expect(Array.from(index.labels("test"))).toEqual([1, 2]);
    expectFormula(await loadAll(opts, "train", 3), 3, 0);
  });

  it("reads the binary records, also from a parent folder holding cifar-100-binary/", async () => {
    const parent = tempDir();
    const dir = join(parent, "cifar-100-binary");
    mkdirSync(dir);
    const write = (name: string, fine: number[], base: number) => {
      const b = Buffer.alloc(fine.length * 3074);
      fine.forEach((f, i) => {
        b[i * 3074] = Math.floor(f / 5);
        b[i * 3074 + 1] = f;
        for (let j = 0; j < 3072; j++) b[i * 3074 + 2 + j] = formulaPixel(i, j, base);
      });
      writeFileSync(join(dir, name), b);
    };
    write("train.bin", [99, 0, 50, 0], 0);
    write("test.bin", [50, 99], 100);
    const opts = { dataset: "CIFAR100", dataPath: parent, imageSize: 32 };
    const index = await openDatasetIndex(opts);
    expect(index.classNames).toEqual(["0", "50", "99"]);
    expect(Array.from(index.labels("train"))).toEqual([2, 0, 1, 0]);
    expect(Array.from(index.labels("test"))).toEqual([1, 2]);
    expectFormula(await loadAll(opts, "train", 4), 4, 0);
  });
});

describe("idx", () => {
  function idxFiles(dir: string, gz: boolean, prefix: string, labels: number[], base: number) {
    const n = labels.length;
    const img = Buffer.alloc(16 + n * 28 * 28);
    img.writeUInt32BE(0x803, 0);
    img.writeUInt32BE(n, 4);
    img.writeUInt32BE(28, 8);
    img.writeUInt32BE(28, 12);
    for (let i = 0; i < n * 784; i++) img[16 + i] = (i * 13 + base) % 256;
    const lab = Buffer.alloc(8 + n);
    lab.writeUInt32BE(0x801, 0);
    lab.writeUInt32BE(n, 4);
    labels.forEach((l, i) => {
      lab[8 + i] = l;
    });
    const ext = gz ? ".gz" : "";
    writeFileSync(join(dir, `${prefix}-images-idx3-ubyte${ext}`), gz ? gzipSync(img) : img);
    writeFileSync(join(dir, `${prefix}-labels-idx1-ubyte${ext}`), gz ? gzipSync(lab) : lab);
  }

  it.each([true, false])("reads IDX files (gzipped: %s); grey becomes three equal channels", async (gz) => {
    const dir = tempDir();
    idxFiles(dir, gz, "train", [4, 1, 9], 0);
    idxFiles(dir, gz, "t10k", [9, 4], 5);
    const opts = { dataset: "idx", dataPath: dir, imageSize: 28 };
    const index = await openDatasetIndex(opts);
    expect(index.classNames).toEqual(["1", "4", "9"]);
    expect(Array.from(index.labels("train"))).toEqual([1, 0, 2]);
    const x = await loadAll(opts, "test", 2);
    let wrong = 0;
    for (let i = 0; i < 2; i++)
      for (let c = 0; c < 3; c++)
        for (let p = 0; p < 784; p++)
          if (x[(i * 3 + c) * 784 + p] !== Math.fround((((i * 784 + p) * 13 + 5) % 256) / 255)) wrong++;
    expect(wrong).toBe(0);
  });

  it("reads the demo Fashion-MNIST subset in data/demo", async () => {
    const dir = join(ROOT, "data/demo");
    const index = await openDatasetIndex({ dataset: "idx", dataPath: dir, imageSize: 28 });
    expect(index.classNames).toEqual(["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    expect(index.labels("train").length).toBe(6000);
    expect(index.labels("test").length).toBe(1000);
    const counts = new Array(10).fill(0);
    for (const l of index.labels("train")) counts[l]++;
    expect(counts).toEqual(new Array(10).fill(600));
    const raw = gunzipSync(readFileSync(join(dir, "t10k-images-idx3-ubyte.gz")));
    const x = await loadAll({ dataset: "idx", dataPath: dir, imageSize: 28, threads: 0 }, "test", 2);
    for (const p of [0, 300, 783]) expect(x[3 * 784 + 784 + p]).toBe(Math.fround(raw[16 + 784 + p] / 255));
  });
});

async function png(file: string, w: number, h: number, fill: (i: number) => number, channels: 1 | 3 | 4 = 3) {
  const raw = Buffer.alloc(w * h * channels);
  for (let i = 0; i < raw.length; i++) raw[i] = fill(i);
  let img = sharp(raw, { raw: { width: w, height: h, channels } });
  if (channels === 1) img = img.toColourspace("b-w");
  await img.png().toFile(file);
  return raw;
}

describe("folder", () => {
  it("lists sorted class folders and files (recursively, images only), labels test classes by name", async () => {
    const root = tempDir();
    for (const p of ["train/b_cls/sub", "train/a_cls", "train/c_cls", "test/c_cls", "test/a_cls"]) {
      mkdirSync(join(root, p), { recursive: true });
    }
    const rgba = await png(join(root, "train/a_cls/2.png"), 8, 8, (i) => (i * 7) % 256, 4);
    await png(join(root, "train/a_cls/10.PNG"), 8, 8, () => 9);
    await sharp({ create: { width: 8, height: 8, channels: 3, background: "#808080" } })
      .toColourspace("b-w")
      .jpeg()
      .toFile(join(root, "train/b_cls/x.jpg"));
    await png(join(root, "train/b_cls/sub/y.png"), 8, 8, () => 1);
    await sharp({ create: { width: 8, height: 8, channels: 3, background: "#ff0000" } })
      .toColourspace("cmyk")
      .jpeg()
      .toFile(join(root, "train/c_cls/cmyk.jpeg"));
    await sharp({ create: { width: 8, height: 8, channels: 3, background: "#00ff00" } })
      .webp({ lossless: true })
      .toFile(join(root, "train/c_cls/w.webp"));
    writeFileSync(join(root, "train/c_cls/notes.txt"), "not an image");
    writeFileSync(join(root, "train/c_cls/.DS_Store"), "hidden");
    await png(join(root, "test/c_cls/t.png"), 8, 8, () => 3);
    await png(join(root, "test/a_cls/t.png"), 8, 8, () => 4);

    const opts = { dataset: "folder", dataPath: root, imageSize: 8 };
    const index = await openDatasetIndex(opts);
    expect(index.classNames).toEqual(["a_cls", "b_cls", "c_cls"]);
    // a_cls: "10.PNG" < "2.png"; b_cls: x.jpg, then sub/y.png; c_cls: cmyk.jpeg, w.webp
    expect(Array.from(index.labels("train"))).toEqual([0, 0, 1, 1, 2, 2]);
    expect(Array.from(index.labels("test"))).toEqual([0, 2]);
    const x = await loadAll({ ...opts, threads: 0 }, "train", 6);
    const F = 3 * 64;
    // 10.PNG is uniformly 9
    expect(x.subarray(0, F).every((v) => v === Math.fround(9 / 255))).toBe(true);
    // 2.png: RGBA with alpha dropped (no compositing), as PIL's convert('RGB')
    let wrong = 0;
    for (let c = 0; c < 3; c++)
      for (let p = 0; p < 64; p++) if (x[F + c * 64 + p] !== Math.fround(rgba[p * 4 + c] / 255)) wrong++;
    expect(wrong).toBe(0);
    // grey JPEG: three identical channels
    const grey = x.subarray(2 * F, 3 * F);
    expect(grey.subarray(0, 64)).toEqual(grey.subarray(64, 128));
    expect(grey.subarray(0, 64)).toEqual(grey.subarray(128, 192));
    // CMYK JPEG of pure red: converted to RGB, still red
    const red = x.subarray(4 * F, 5 * F);
    expect(red[0]).toBeGreaterThan(0.8);
    expect(red[64]).toBeLessThan(0.2);
    // lossless WebP green
    expect(x[5 * F + 64]).toBe(1);
    expect(x[5 * F]).toBe(0);
  });
});

describe("imagenet_r", () => {
  async function rawTree(): Promise<string> {
    const root = tempDir();
    const sizes = { n01: 7, n02: 9, n03: 7 };
    for (const [cls, n] of Object.entries(sizes)) {
      mkdirSync(join(root, "imagenet-r", cls), { recursive: true });
      for (let i = 0; i < n; i++) await png(join(root, "imagenet-r", cls, `img_${i}.png`), 4, 4, () => i);
    }
    writeFileSync(join(root, "imagenet-r", "README.txt"), "ImageNet-R");
    return root;
  }

  it("splits a raw tree 80/20 as sklearn's train_test_split(test_size=0.2, random_state=seed), and records it", async () => {
    const root = await rawTree();
    const before = snapshot(root);
    const run = tempDir();
    const manifestPath = join(run, "split.json");
    const opts = { dataset: "ImageNet_R", dataPath: root, imageSize: 4, manifestPath };
    const index = await openDatasetIndex(opts);
    expect(index.kind).toBe("imagenet_r");
    expect(index.classNames).toEqual(["n01", "n02", "n03"]);
    // np.random.RandomState(0).permutation(23)[:ceil(0.2·23) = 5], sorted: 10, 11, 14, 20, 21 in ImageFolder
    // order (n01: 0–6, n02: 7–15, n03: 16–22) = n02/img_3, img_4, img_7, n03/img_4, img_5
    expect(Array.from(index.labels("test"))).toEqual([1, 1, 1, 2, 2]);
    expect(index.labels("train").length).toBe(18);
    const manifest = JSON.parse(readFileSync(manifestPath, "utf8"));
    expect(manifest.seed).toBe(0);
    expect(manifest.test).toEqual([
      "n02/img_3.png",
      "n02/img_4.png",
      "n02/img_7.png",
      "n03/img_4.png",
      "n03/img_5.png",
    ]);
    expect(manifest.train.length).toBe(18);
    // the test images' pixels are their file number
    const x = await loadAll(opts, "test", 5);
    expect([0, 1, 2, 3, 4].map((i) => Math.round(x[i * 48] * 255))).toEqual([3, 4, 7, 4, 5]);
    // another seed gives another split; the same manifest path then refuses the mismatch
    const other = await openDatasetIndex({ ...opts, splitSeed: 5, manifestPath: undefined });
    expect(Array.from(other.labels("test"))).toEqual([0, 2, 2, 2, 2]); // indices 2, 17, 18, 19, 20
    await expect(openDatasetIndex({ ...opts, splitSeed: 5 })).rejects.toThrow(/seed 0/);
    expect(snapshot(root)).toBe(before); // the user's files are never moved or written
    // reopening reads the manifest, even if it was edited by hand
    const edited = {
      ...manifest,
      test: manifest.train.slice(0, 5),
      train: [...manifest.train.slice(5), ...manifest.test],
    };
    writeFileSync(manifestPath, JSON.stringify(edited));
    const again = await openDatasetIndex(opts);
    expect(Array.from(again.labels("test"))).toEqual([0, 0, 0, 0, 0]);
    // workers read the manifest too, but never write one
    const ds = await openDataset({ ...opts, threads: 0 });
    expect(Array.from(ds.labels("test"))).toEqual([0, 0, 0, 0, 0]);
    await ds.close();
    const elsewhere = join(tempDir(), "absent/split.json");
    const fresh = await openDataset({ ...opts, manifestPath: elsewhere, threads: 0 });
    expect(Array.from(fresh.labels("test"))).toEqual([1, 1, 1, 2, 2]);
    await fresh.close();
    expect(existsSync(elsewhere)).toBe(false);
  });

  it("refuses a manifest inside the dataset or one that no longer matches the files", async () => {
    const root = await rawTree();
    await expect(
      openDatasetIndex({
        dataset: "imagenet_r",
        dataPath: root,
        imageSize: 4,
        manifestPath: join(root, "m.json"),
      }),
    ).rejects.toThrow(/inside the dataset/);
    const manifestPath = join(tempDir(), "m.json");
    await openDatasetIndex({ dataset: "imagenet_r", dataPath: root, imageSize: 4, manifestPath });
    await png(join(root, "imagenet-r/n01/img_99.png"), 4, 4, () => 0);
    await expect(
      openDatasetIndex({ dataset: "imagenet_r", dataPath: root, imageSize: 4, manifestPath }),
    ).rejects.toThrow(/does not match the dataset/);
  });

  it("reads the train/test layout the reference leaves behind", async () => {
    const root = tempDir();
    for (const p of ["train/n01", "train/n02", "test/n01", "test/n02"])
      mkdirSync(join(root, p), { recursive: true });
    await png(join(root, "train/n01/a.png"), 4, 4, () => 1);
    await png(join(root, "train/n02/a.png"), 4, 4, () => 2);
    await png(join(root, "test/n02/a.png"), 4, 4, () => 3);
    await png(join(root, "test/n01/b.png"), 4, 4, () => 4);
    const index = await openDatasetIndex({ dataset: "imagenet_r", dataPath: root, imageSize: 4 });
    expect(Array.from(index.labels("test"))).toEqual([0, 1]);
  });
});

describe("domainnet", () => {
  it("reads the domain lists in order and uses their labels", async () => {
    const root = tempDir();
    const lines: Record<string, string[]> = {
      clipart_train: [],
      clipart_test: [],
      sketch_train: [],
      sketch_test: [],
    };
    const add = async (list: string, domain: string, cls: string, label: number, i: number) => {
      mkdirSync(join(root, domain, cls), { recursive: true });
      await png(join(root, domain, cls, `${i}.png`), 4, 4, () => i);
      lines[list].push(`${domain}/${cls}/${i}.png ${label}`);
    };
    await add("clipart_train", "clipart", "zebra", 344, 1);
    await add("clipart_train", "clipart", "aircraft_carrier", 0, 2);
    await add("sketch_train", "sketch", "apple", 5, 3);
    await add("clipart_test", "clipart", "apple", 5, 4);
    await add("sketch_test", "sketch", "zebra", 344, 5);
    for (const [name, l] of Object.entries(lines))
      writeFileSync(join(root, `${name}.txt`), `${l.join("\n")}\n`);
    const opts = { dataset: "domainnet", dataPath: root, imageSize: 4, domains: ["clipart", "sketch"] };
    const index = await openDatasetIndex(opts);
    expect(index.classNames).toEqual(["0", "5", "344"]);
    expect(Array.from(index.labels("train"))).toEqual([2, 0, 1]);
    expect(Array.from(index.labels("test"))).toEqual([1, 2]);
    const x = await loadAll(opts, "train", 3);
    expect([0, 1, 2].map((i) => Math.round(x[i * 48] * 255))).toEqual([1, 2, 3]);
    // all six domains by default: the missing lists are named
    await expect(openDatasetIndex({ ...opts, domains: undefined })).rejects.toThrow(/infograph_train\.txt/);
  });
});
