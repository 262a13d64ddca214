import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import type { ArrayCatalog } from "./catalog.js";
import { DataError } from "./errors.js";
import { requireDirectory } from "./image_tree.js";
import { numericClasses } from "./labels.js";

/** An IDX file of unsigned bytes (MNIST's format): dimensions and the values. */
export interface IdxArray {
  readonly dims: number[];
  readonly values: Uint8Array;
}

/** Reads an IDX file of uint8, gunzipping it when it starts with the gzip magic. */
export async function readIdx(file: string, expectedDims: number): Promise<IdxArray> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch (e) {
    throw new DataError(`cannot read IDX file (${(e as Error).message})`, file);
  }
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      bytes = gunzipSync(bytes);
    } catch (e) {
      throw new DataError(`corrupt gzip data (${(e as Error).message})`, file);
    }
  }
  if (bytes.length < 4 || bytes[0] !== 0 || bytes[1] !== 0)
    throw new DataError("not an IDX file (bad magic)", file);
  if (bytes[2] !== 0x08)
    throw new DataError(`IDX element type 0x${bytes[2].toString(16)} is not unsigned byte`, file);
  if (bytes[3] !== expectedDims) {
    throw new DataError(`IDX file has ${bytes[3]} dimensions, expected ${expectedDims}`, file);
  }
  const header = 4 + 4 * expectedDims;
  if (bytes.length < header) throw new DataError("IDX header is truncated", file);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims = Array.from({ length: expectedDims }, (_, i) => view.getUint32(4 + 4 * i, false));
  const count = dims.reduce((p, d) => p * d, 1);
  if (bytes.length - header !== count) {
    throw new DataError(
      `wrong record size: header says ${dims.join("×")} = ${count} bytes of data, the file holds ${bytes.length - header}`,
      file,
    );
  }
  return { dims, values: bytes.subarray(header) };
}

/** Finds `{prefix}-{images-idx3|labels-idx1}-ubyte[.gz]` (also the `…images.idx3-ubyte` spelling). */
async function findIdx(dir: string, names: readonly string[], prefix: string, what: string): Promise<string> {
  const base = `${prefix}-${what}`;
  const dotted = base.replace(/-(idx\d)/, ".$1");
  for (const candidate of [base, `${base}.gz`, dotted, `${dotted}.gz`]) {
    if (names.includes(candidate)) return join(dir, candidate);
  }
  throw new DataError(`IDX file ${base}[.gz] is missing`, dir);
}

/** MNIST / Fashion-MNIST IDX files: `train-*` and `t10k-*`, grey images (made 3-channel when loaded). */
export async function readIdxCatalog(dataPath: string, withPixels: boolean): Promise<ArrayCatalog> {
  await requireDirectory(dataPath, "dataset folder");
  const names = await readdir(dataPath);
  const split = async (prefix: string) => {
    const labelFile = await findIdx(dataPath, names, prefix, "labels-idx1-ubyte");
    const imageFile = await findIdx(dataPath, names, prefix, "images-idx3-ubyte");
    const labels = await readIdx(labelFile, 1);
    let pixels: Uint8Array | undefined;
    let height = 0;
    let width = 0;
    if (withPixels) {
      const images = await readIdx(imageFile, 3);
      [, height, width] = images.dims;
      if (images.dims[0] !== labels.dims[0]) {
        throw new DataError(
          `${images.dims[0]} images but ${labels.dims[0]} labels in ${labelFile}`,
          imageFile,
        );
      }
      if (height === 0 || width === 0) throw new DataError("images have zero size", imageFile);
      pixels = new Uint8Array(new SharedArrayBuffer(images.values.byteLength));
      pixels.set(images.values);
    }
    return { labelFile, labels: labels.values, pixels, height, width };
  };
  const train = await split("train");
  const test = await split("t10k");
  const {
    classNames,
    train: trainLabels,
    test: testLabels,
  } = numericClasses(train.labels, test.labels, train.labelFile, test.labelFile);
  const pixelsOf = (s: typeof train) => ({
    data: s.pixels as Uint8Array,
    channels: 1 as const,
    height: s.height,
    width: s.width,
  });
  return {
    storage: "arrays",
    kind: "idx",
    classNames,
    testTransform: "resize",
    labels: { train: trainLabels, test: testLabels },
    pixels: withPixels ? { train: pixelsOf(train), test: pixelsOf(test) } : undefined,
  };
}
