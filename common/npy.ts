/**
 * NumPy `.npy` arrays and `.npz` archives (a zip of `<name>.npy` entries), as Google's ViT checkpoints
 * ship them. Format: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
 *
 * Arrays come back little-endian (host order; like safetensors.ts, big-endian hosts are not supported) and
 * in C order whatever the file used, so callers never see the file's layout.
 */
import { type FileHandle, open } from "node:fs/promises";
import * as zlib from "node:zlib";
import { inflateSync } from "fflate";
import { type TypedData, widenF16 } from "./safetensors.js";

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
    // Fortran order = C order of the reversed shape; reversing the axes gives the C-order array.
    const reversed = [...shape].reverse();
    data = permute(
      data,
      reversed,
      reversed.map((_, i) => reversed.length - 1 - i),
    );
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

/** out = src transposed so that axis k of out is axis perm[k] of src (numpy's `transpose(perm)`). */
function permute<T extends TypedData>(src: T, shape: readonly number[], perm: readonly number[]): T {
  const n = shape.length;
  const strides = new Array<number>(n);
  let s = 1;
  for (let k = n - 1; k >= 0; k--) {
    strides[k] = s;
    s *= shape[k];
  }
  const outShape = perm.map((p) => shape[p]);
  const step = perm.map((p) => strides[p]);
  const out = new (src.constructor as new (len: number) => T)(src.length);
  // Element-wise copy works for every TypedData (numbers or bigints); the cast only quiets the union type.
  const o = out as unknown as Float64Array;
  const i = src as unknown as Float64Array;
  const idx = new Array<number>(n).fill(0);
  let at = 0;
  for (let j = 0; j < src.length; j++) {
    o[j] = i[at];
    for (let k = n - 1; k >= 0; k--) {
      idx[k]++;
      at += step[k];
      if (idx[k] < outShape[k]) break;
      at -= step[k] * outShape[k];
      idx[k] = 0;
    }
  }
  return out;
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
// .npz: a zip archive (stored or deflated, ZIP64 as numpy writes it)

interface ZipEntry {
  name: string;
  method: number;
  flags: number;
  crc: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

/**
 * Reads every `<name>.npy` entry of an .npz; keys are the entry names without `.npy` (they may contain `/`).
 * Other entries are ignored, as numpy's loader ignores them for arrays.
 *
 * Memory: each entry is read (stored) or inflated (deflated) into a buffer of its own and its array is a
 * view into that buffer, so a 400 MB ViT-B/16 archive costs about 400 MB, not the archive plus copies.
 * The whole-file buffer is avoided on purpose: entry data sit at arbitrary offsets in the archive, so views
 * into it would mostly be misaligned and need copying anyway.
 */
export async function readNpz(path: string): Promise<Map<string, NpyArray>> {
  const fh = await open(path, "r");
  try {
    const { size } = await fh.stat();
    const out = new Map<string, NpyArray>();
    for (const entry of await readCentralDirectory(fh, size, path)) {
      if (!entry.name.endsWith(".npy")) continue;
      const key = entry.name.slice(0, -4);
      const where = `${path}: entry "${entry.name}"`;
      if (out.has(key)) throw new NpyError(`${where}: duplicate entry in the archive`);
      out.set(key, parseNpy(await entryData(fh, size, entry, where), where));
    }
    return out;
  } finally {
    await fh.close();
  }
}

/** A fresh buffer (byteOffset 0) holding `length` bytes of the file from `position`. */
async function readAt(fh: FileHandle, position: number, length: number, where: string): Promise<Uint8Array> {
  const buf = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, Math.min(1 << 30, length - done), position + done);
    if (bytesRead === 0) throw new NpyError(`${where}: file ended early (it changed while being read?)`);
    done += bytesRead;
  }
  return buf;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

async function readCentralDirectory(fh: FileHandle, size: number, path: string): Promise<ZipEntry[]> {
  const bad = (why: string) => new NpyError(`${path}: not a valid .npz (zip) archive: ${why}`);
  const u64 = (dv: DataView, at: number): number => {
    const v = dv.getBigUint64(at, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`64-bit field ${v} is too large`);
    return Number(v);
  };

  // End of central directory record: 22 bytes plus a comment of up to 65535 bytes at the end of the file.
  const tailStart = Math.max(0, size - 22 - 0xffff);
  const tail = await readAt(fh, tailStart, size - tailStart, path);
  const tdv = view(tail);
  let eocd = -1;
  for (let at = tail.length - 22; at >= 0; at--) {
    if (tdv.getUint32(at, true) === 0x06054b50) {
      eocd = at;
      break;
    }
  }
  if (eocd < 0) throw bad("no end-of-central-directory record");
  let count = tdv.getUint16(eocd + 10, true);
  let cdSize = tdv.getUint32(eocd + 12, true);
  let cdOffset = tdv.getUint32(eocd + 16, true);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    const locAt = tailStart + eocd - 20;
    if (locAt < 0) throw bad("ZIP64 locator missing");
    const loc = view(await readAt(fh, locAt, 20, path));
    if (loc.getUint32(0, true) !== 0x07064b50) throw bad("ZIP64 locator missing");
    const recAt = u64(loc, 8);
    if (recAt + 56 > size) throw bad("ZIP64 end record beyond the file");
    const rec = view(await readAt(fh, recAt, 56, path));
    if (rec.getUint32(0, true) !== 0x06064b50) throw bad("ZIP64 end record missing");
    count = u64(rec, 32);
    cdSize = u64(rec, 40);
    cdOffset = u64(rec, 48);
  }
  if (cdOffset + cdSize > size) throw bad(`central directory [${cdOffset}, +${cdSize}) beyond the file`);

  const cd = await readAt(fh, cdOffset, cdSize, path);
  const dv = view(cd);
  const names = new TextDecoder();
  const entries: ZipEntry[] = [];
  let at = 0;
  for (let n = 0; n < count; n++) {
    if (at + 46 > cd.length || dv.getUint32(at, true) !== 0x02014b50) {
      throw bad(`central directory entry ${n} is corrupt`);
    }
    const flags = dv.getUint16(at + 8, true);
    const method = dv.getUint16(at + 10, true);
    const crc = dv.getUint32(at + 16, true);
    let compressedSize = dv.getUint32(at + 20, true);
    let size = dv.getUint32(at + 24, true);
    const nameLen = dv.getUint16(at + 28, true);
    const extraLen = dv.getUint16(at + 30, true);
    const commentLen = dv.getUint16(at + 32, true);
    let localHeaderOffset = dv.getUint32(at + 42, true);
    const extraEnd = at + 46 + nameLen + extraLen;
    if (extraEnd + commentLen > cd.length) throw bad(`central directory entry ${n} is corrupt`);
    const name = names.decode(cd.subarray(at + 46, at + 46 + nameLen));
    // ZIP64 extended information: the 64-bit values of exactly those fields that hold 0xffffffff, in order.
    let x = at + 46 + nameLen;
    while (x + 4 <= extraEnd) {
      const id = dv.getUint16(x, true);
      const len = dv.getUint16(x + 2, true);
      if (id === 0x0001) {
        let p = x + 4;
        if (size === 0xffffffff) {
          size = u64(dv, p);
          p += 8;
        }
        if (compressedSize === 0xffffffff) {
          compressedSize = u64(dv, p);
          p += 8;
        }
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = u64(dv, p);
      }
      x += 4 + len;
    }
    entries.push({ name, method, flags, crc, compressedSize, size, localHeaderOffset });
    at = extraEnd + commentLen;
  }
  return entries;
}

async function entryData(fh: FileHandle, fileSize: number, e: ZipEntry, where: string): Promise<Uint8Array> {
  if (e.flags & 1) throw new NpyError(`${where}: encrypted zip entries are not supported`);
  const lh = e.localHeaderOffset;
  const local = lh + 30 <= fileSize ? view(await readAt(fh, lh, 30, where)) : undefined;
  if (local === undefined || local.getUint32(0, true) !== 0x04034b50) {
    throw new NpyError(`${where}: bad local header at offset ${lh} (corrupt zip)`);
  }
  // The local header's own name/extra lengths may differ from the central directory's (numpy's ZIP64 extra).
  const start = lh + 30 + local.getUint16(26, true) + local.getUint16(28, true);
  const end = start + e.compressedSize;
  if (end > fileSize) {
    throw new NpyError(`${where}: entry data [${start}, ${end}) goes beyond the archive (${fileSize} bytes)`);
  }
  let data: Uint8Array;
  if (e.method === 0) {
    if (e.compressedSize !== e.size) {
      throw new NpyError(`${where}: stored entry with compressed size ${e.compressedSize} ≠ size ${e.size}`);
    }
    // numpy pads .npy headers to a multiple of 64 bytes, so in this fresh buffer the array data are aligned.
    data = await readAt(fh, start, e.compressedSize, where);
  } else if (e.method === 8) {
    const packed = await readAt(fh, start, e.compressedSize, where);
    try {
      data = inflateSync(packed, { out: new Uint8Array(e.size) });
    } catch (err) {
      throw new NpyError(`${where}: cannot inflate: ${(err as Error).message}`);
    }
    if (data.length !== e.size) {
      throw new NpyError(`${where}: inflated to ${data.length} bytes, the archive says ${e.size}`);
    }
  } else {
    throw new NpyError(
      `${where}: unsupported zip compression method ${e.method} (supported: stored, deflate)`,
    );
  }
  const crc = crc32(data);
  if (crc !== e.crc) {
    throw new NpyError(
      `${where}: CRC-32 mismatch (archive says ${hex(e.crc)}, data gives ${hex(crc)}): the file is corrupt`,
    );
  }
  return data;
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, "0")}`;
}

let crcTable: Int32Array | undefined;

/** zlib.crc32 exists from Node 20.15; the table version keeps older Node 20 releases working. */
function crc32(data: Uint8Array): number {
  if (typeof zlib.crc32 === "function") return zlib.crc32(data) >>> 0;
  if (crcTable === undefined) {
    crcTable = new Int32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c;
    }
  }
  const t = crcTable;
  let c = -1;
  for (let i = 0; i < data.length; i++) c = t[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}
