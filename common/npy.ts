/**
 * NumPy `.npy` arrays and `.npz` archives (a zip of `<name>.npy` entries), as Google's ViT checkpoints
 * ship them. Format: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
 *
 * Arrays come back little-endian (host order; like safetensors.ts, big-endian hosts are not supported) and
 * in C order whatever the file used, so callers never see the file's layout.
 */
import { type TypedData, widenF16 } from "./safetensors.js";
import { gatherStrided } from "./strided.js";
import { openZip, type ZipArchive } from "./zip.js";

export interface NpyArray {
  /** The file's descr, e.g. `<f4` or `>i8`; `data` is already converted to host order and float32 for f2. */
  readonly dtype: string;
  readonly shape: number[];
  /** Row-major (C order) always. */
  readonly data: TypedData;
  /** The file's flag; `data` has been converted to C order when it was true. */
  readonly fortranOrder: boolean;
}

export class NpyError extends Error {
  override readonly name = "NpyError";
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

type Kind = "f2" | "f4" | "f8" | "i1" | "i2" | "i4" | "i8" | "u1" | "b1";
const KIND_SIZE: Readonly<Record<Kind, number>> = {
  f2: 2,
  f4: 4,
  f8: 8,
  i1: 1,
  i2: 2,
  i4: 4,
  i8: 8,
  u1: 1,
  b1: 1,
};
const SUPPORTED = "<f4 <f8 <f2 <i8 <i4 <i2 |i1 |u1 |b1 (and the big-endian '>' forms)";

/** Parses one `.npy` file held in memory; `source` names it in errors. Aligned data are views into `bytes`. */
export function parseNpy(bytes: Uint8Array, source: string): NpyArray {
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b)) {
    throw new NpyError(`${source}: not an .npy array (bad magic; expected \\x93NUMPY)`);
  }
  const major = bytes[6];
  const minor = bytes[7];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerStart: number;
  let headerLen: number;
  if (major === 1) {
    headerStart = 10;
    headerLen = dv.getUint16(8, true);
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) throw new NpyError(`${source}: truncated .npy header`);
    headerStart = 12;
    headerLen = dv.getUint32(8, true);
  } else {
    throw new NpyError(
      `${source}: unsupported .npy format version ${major}.${minor} (supported: 1.0, 2.0, 3.0)`,
    );
  }
  const dataStart = headerStart + headerLen;
  if (dataStart > bytes.length) {
    throw new NpyError(
      `${source}: .npy header length ${headerLen} goes beyond the data (${bytes.length} bytes)`,
    );
  }
  // Versions 1 and 2 store latin-1 headers; version 3 exists only to allow UTF-8 (structured field names).
  const text = new TextDecoder(major === 3 ? "utf-8" : "latin1").decode(
    bytes.subarray(headerStart, dataStart),
  );
  const { descr, fortranOrder, shape } = parseHeaderDict(text, source);

  const order = descr[0];
  const kind = descr.slice(1) as Kind;
  const known = descr.length === 3 && Object.hasOwn(KIND_SIZE, kind) && "<>|=".includes(order);
  const size = known ? KIND_SIZE[kind] : 0;
  // '|' (not applicable) is numpy's byte order for one-byte types only.
  if (!known || (size > 1 && order === "|")) {
    throw new NpyError(`${source}: unsupported dtype ${JSON.stringify(descr)} (supported: ${SUPPORTED})`);
  }
  let count = 1;
  for (const d of shape) count *= d;
  const raw = bytes.subarray(dataStart);
  if (raw.length !== count * size) {
    throw new NpyError(
      `${source}: data size mismatch: shape [${shape.join(", ")}] of ${descr} needs ${count} × ${size} = ` +
        `${count * size} bytes, the file has ${raw.length}`,
    );
  }

  let data = toTyped(raw, kind, size, order === ">");
  if (fortranOrder && shape.length > 1) {
    // Fortran order: axis k steps by the product of the sizes before it.
    const strides = shape.map((_, k) => shape.slice(0, k).reduce((a, b) => a * b, 1));
    data = gatherStrided(data, shape, strides);
  }
  return { dtype: descr, shape, data, fortranOrder };
}

function toTyped(raw: Uint8Array, kind: Kind, size: number, bigEndian: boolean): TypedData {
  let buffer: ArrayBufferLike = raw.buffer;
  let offset = raw.byteOffset;
  if ((bigEndian && size > 1) || offset % size !== 0) {
    const copy = new Uint8Array(raw);
    if (bigEndian && size > 1) {
      for (let i = 0; i < copy.length; i += size) {
        for (let a = i, b = i + size - 1; a < b; a++, b--) {
          const t = copy[a];
          copy[a] = copy[b];
          copy[b] = t;
        }
      }
    }
    buffer = copy.buffer;
    offset = 0;
  }
  const n = raw.length / size;
  switch (kind) {
    case "f2":
      return widenF16(new Uint16Array(buffer, offset, n));
    case "f4":
      return new Float32Array(buffer, offset, n);
    case "f8":
      return new Float64Array(buffer, offset, n);
    case "i8":
      return new BigInt64Array(buffer, offset, n);
    case "i4":
      return new Int32Array(buffer, offset, n);
    case "i2":
      return new Int16Array(buffer, offset, n);
    case "i1":
      return new Int8Array(buffer, offset, n);
    case "u1":
    case "b1":
      return new Uint8Array(buffer, offset, n);
  }
}

// ---------------------------------------------------------------------------------------------------------
// The header: a Python dict literal such as {'descr': '<f4', 'fortran_order': False, 'shape': (4, 3), }

type PyValue = string | number | boolean | null | PyValue[] | { [key: string]: PyValue };

function parseHeaderDict(
  text: string,
  source: string,
): { descr: string; fortranOrder: boolean; shape: number[] } {
  let dict: PyValue;
  try {
    dict = new PyLiteralParser(text).parseAll();
  } catch (err) {
    throw new NpyError(
      `${source}: unreadable .npy header ${JSON.stringify(text.trim())}: ${(err as Error).message}`,
    );
  }
  if (typeof dict !== "object" || dict === null || Array.isArray(dict)) {
    throw new NpyError(`${source}: .npy header is not a dict: ${JSON.stringify(text.trim())}`);
  }
  const { descr, fortran_order: fortranOrder, shape } = dict;
  if (typeof descr !== "string") {
    // Structured dtypes have a list here.
    throw new NpyError(`${source}: unsupported dtype ${JSON.stringify(descr)} (supported: ${SUPPORTED})`);
  }
  if (typeof fortranOrder !== "boolean") {
    throw new NpyError(`${source}: .npy header has no boolean 'fortran_order'`);
  }
  if (
    !Array.isArray(shape) ||
    !shape.every((d) => typeof d === "number" && Number.isSafeInteger(d) && d >= 0)
  ) {
    throw new NpyError(`${source}: .npy header 'shape' is not a tuple of non-negative integers`);
  }
  return { descr, fortranOrder, shape: shape as number[] };
}

/** Just enough of Python's literal syntax for .npy headers: dicts, tuples, lists, strings, ints, booleans. */
class PyLiteralParser {
  private i = 0;
  constructor(private readonly s: string) {}

  parseAll(): PyValue {
    const v = this.value();
    this.ws();
    if (this.i !== this.s.length)
      throw new Error(`unexpected ${JSON.stringify(this.s[this.i])} at ${this.i}`);
    return v;
  }

  private ws(): void {
    while (this.i < this.s.length && /\s/.test(this.s[this.i])) this.i++;
  }

  private value(): PyValue {
    this.ws();
    const c = this.s[this.i];
    if (c === "{") return this.dict();
    if (c === "(") return this.seq(")");
    if (c === "[") return this.seq("]");
    if (c === "'" || c === '"') return this.str();
    const m = /^(-?\d+)L?|^(True|False|None)\b/.exec(this.s.slice(this.i));
    if (m === null) throw new Error(`unexpected ${JSON.stringify(c ?? "end of header")} at ${this.i}`);
    this.i += m[0].length;
    if (m[1] !== undefined) return Number(m[1]);
    return m[2] === "True" ? true : m[2] === "False" ? false : null;
  }

  private str(): string {
    const q = this.s[this.i++];
    let out = "";
    while (this.i < this.s.length && this.s[this.i] !== q) {
      if (this.s[this.i] === "\\") this.i++;
      out += this.s[this.i++];
    }
    if (this.i >= this.s.length) throw new Error("unterminated string");
    this.i++;
    return out;
  }

  private seq(close: string): PyValue[] {
    this.i++;
    const out: PyValue[] = [];
    for (;;) {
      this.ws();
      if (this.s[this.i] === close) break;
      out.push(this.value());
      this.ws();
      if (this.s[this.i] === ",") this.i++;
      else if (this.s[this.i] !== close) throw new Error(`expected ',' or '${close}' at ${this.i}`);
    }
    this.i++;
    return out;
  }

  private dict(): { [key: string]: PyValue } {
    this.i++;
    const out: { [key: string]: PyValue } = {};
    for (;;) {
      this.ws();
      if (this.s[this.i] === "}") break;
      const key = this.value();
      if (typeof key !== "string") throw new Error(`dict key at ${this.i} is not a string`);
      this.ws();
      if (this.s[this.i] !== ":") throw new Error(`expected ':' at ${this.i}`);
      this.i++;
      // defineProperty: a key such as "__proto__" must stay data, never reach the prototype.
      Object.defineProperty(out, key, {
        value: this.value(),
        enumerable: true,
        writable: true,
        configurable: true,
      });
      this.ws();
      if (this.s[this.i] === ",") this.i++;
      else if (this.s[this.i] !== "}") throw new Error(`expected ',' or '}' at ${this.i}`);
    }
    this.i++;
    return out;
  }
}

// ---------------------------------------------------------------------------------------------------------
// .npz: a zip of `<name>.npy` entries (stored, or deflated by savez_compressed; ZIP64 as numpy writes it)

/**
 * Reads every `<name>.npy` entry of an .npz; keys are the entry names without `.npy` (they may contain `/`).
 * Other entries are ignored, as numpy's loader ignores them for arrays.
 *
 * Each entry comes in a buffer of its own (common/zip.ts) and its array is a view into that buffer: numpy
 * pads .npy headers to a multiple of 64 bytes, so the data are aligned and never copied again.
 */
export async function readNpz(path: string): Promise<Map<string, NpyArray>> {
  return npzArrays(await openZip(path, ".npz"));
}

/** The arrays of an archive already open (when the caller looked inside to tell an .npz from a .pth). */
export function npzArrays(zip: ZipArchive): Map<string, NpyArray> {
  const out = new Map<string, NpyArray>();
  for (const name of zip.names) {
    if (!name.endsWith(".npy")) continue;
    out.set(name.slice(0, -4), parseNpy(zip.read(name), `${zip.path}: entry "${name}"`));
  }
  return out;
}
