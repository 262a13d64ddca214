import { readFile } from "node:fs/promises";
import { CIFAR_IMAGE, type CifarRecords } from "./cifar_binary.js";
import { DataError } from "./errors.js";
import { NumpyArray, numpyIntegers, type PyValue, parsePickle } from "./pickle.js";

/** One of torchvision's `cifar-100-python/{train,test}` pickles: `data` (N×3072 uint8), `fine_labels`. */
export async function readCifarPickle(file: string, withPixels: boolean): Promise<CifarRecords> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (e) {
    throw new DataError(`cannot read CIFAR pickle (${(e as Error).message})`, file);
  }
  const root = parsePickle(bytes, file);
  if (!(root instanceof Map)) throw new DataError("the pickle does not hold a dict", file);
  const fine = intList(root.get("fine_labels"), "fine_labels", file);
  const coarseValue = root.get("coarse_labels");
  const coarse =
    coarseValue === undefined
      ? new Array<number>(fine.length).fill(0)
      : intList(coarseValue, "coarse_labels", file);
  const data = root.get("data");
  let raw: Uint8Array;
  if (data instanceof NumpyArray) {
    if (!/^[|<>=]?u1$/.test(data.dtype.descr))
      throw new DataError(`field "data" has dtype ${data.dtype.descr}, expected uint8`, file);
    const [n, width] = data.shape;
    if (data.shape.length !== 2 || n !== fine.length || width !== CIFAR_IMAGE || data.fortran) {
      throw new DataError(
        `wrong record size: field "data" has shape (${data.shape.join(", ")})${data.fortran ? " in Fortran order" : ""}, expected (${fine.length}, ${CIFAR_IMAGE}) in C order`,
        file,
      );
    }
    raw = data.data;
  } else if (data instanceof Uint8Array) {
    raw = data;
  } else {
    throw new DataError('field "data" is missing or not a numpy uint8 array', file);
  }
  if (raw.byteLength !== fine.length * CIFAR_IMAGE) {
    throw new DataError(
      `wrong record size: "data" holds ${raw.byteLength} bytes for ${fine.length} labels`,
      file,
    );
  }
  if (coarse.length !== fine.length) {
    throw new DataError(`"coarse_labels" has ${coarse.length} entries, "fine_labels" ${fine.length}`, file);
  }
  let pixels: Uint8Array | undefined;
  if (withPixels) {
    pixels = new Uint8Array(new SharedArrayBuffer(raw.byteLength));
    pixels.set(raw);
  }
  const toU8 = (values: number[], field: string) => {
    const out = new Uint8Array(values.length);
    values.forEach((v, i) => {
      if (!Number.isInteger(v) || v < 0 || v > 255) {
        throw new DataError(`label out of range: ${field}[${i}] = ${v} (expected 0..255)`, file);
      }
      out[i] = v;
    });
    return out;
  };
  return { fine: toU8(fine, "fine_labels"), coarse: toU8(coarse, "coarse_labels"), pixels };
}

function intList(v: PyValue | undefined, field: string, file: string): number[] {
  if (v instanceof NumpyArray) return numpyIntegers(v, file);
  if (Array.isArray(v) && v.every((x) => typeof x === "number")) return v as number[];
  throw new DataError(`field "${field}" is missing or not a list of integers`, file);
}
