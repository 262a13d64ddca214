/**
 * Reader and writer for the safetensors format (https://github.com/huggingface/safetensors):
 * an 8-byte little-endian u64 header length N, N bytes of JSON header
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {string: string}}`, then the data
 * buffer. Offsets are relative to the start of the data buffer; tensors are little-endian and row-major.
 *
 * Typed arrays use the host's byte order, so on a big-endian host both reading and writing would silently
 * produce swapped numbers. No platform Node/TensorFlow.js runs on for us is big-endian, so instead of
 * swapping we refuse to run there (see `assertLittleEndian`).
 */
import { type FileHandle, open } from "node:fs/promises";
import { writeFileAtomic } from "./atomic_write.js";

export type StDtype = "F64" | "F32" | "F16" | "BF16" | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL";
export type TypedData =
  | Float32Array
  | Float64Array
  | BigInt64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint8Array;

export interface StTensor {
  readonly dtype: StDtype;
  readonly shape: readonly number[];
  readonly data: TypedData;
}

export interface StFile {
  readonly tensors: Map<string, StTensor>;
  readonly metadata: Record<string, string>;
}

export interface StHeaderEntry {
  dtype: StDtype;
  shape: number[];
  offsets: [number, number];
}

export class SafetensorsError extends Error {
  override readonly name = "SafetensorsError";
}

type TypedCtor =
  | Float32ArrayConstructor
  | Float64ArrayConstructor
  | BigInt64ArrayConstructor
  | Int32ArrayConstructor
  | Int16ArrayConstructor
  | Int8ArrayConstructor
  | Uint8ArrayConstructor;

/** `size`: bytes per element in the file; `ctor`: the in-memory array (F16/BF16 are widened to float32). */
const DTYPES: Readonly<Record<StDtype, { readonly size: number; readonly ctor: TypedCtor }>> = {
  F64: { size: 8, ctor: Float64Array },
  F32: { size: 4, ctor: Float32Array },
  F16: { size: 2, ctor: Float32Array },
  BF16: { size: 2, ctor: Float32Array },
  I64: { size: 8, ctor: BigInt64Array },
  I32: { size: 4, ctor: Int32Array },
  I16: { size: 2, ctor: Int16Array },
  I8: { size: 1, ctor: Int8Array },
  U8: { size: 1, ctor: Uint8Array },
  BOOL: { size: 1, ctor: Uint8Array },
};

const SUPPORTED = Object.keys(DTYPES).join(", ");
const METADATA_KEY = "__metadata__";

function isDtype(x: unknown): x is StDtype {
  return typeof x === "string" && Object.hasOwn(DTYPES, x);
}

const IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function assertLittleEndian(): void {
  if (!IS_LITTLE_ENDIAN) {
    throw new SafetensorsError("safetensors: big-endian hosts are not supported");
  }
}

// ---------------------------------------------------------------------------------------------------------
// Half-precision conversions

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** IEEE 754 binary16 bit pattern → number. */
export function f16ToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** bfloat16 bit pattern → number (bfloat16 is the upper half of a float32). */
export function bf16ToF32(bits: number): number {
  scratchU32[0] = (bits & 0xffff) << 16;
  return scratchF32[0];
}

/** number → binary16 bit pattern, rounded to nearest, ties to even (as numpy and PyTorch round). */
export function f32ToF16(x: number): number {
  scratchF32[0] = x;
  const b = scratchU32[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) return mant === 0 ? sign | 0x7c00 : sign | 0x7e00;
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half (or zero): the float32 significand with its implicit bit, scaled to units of 2^-24.
    const shift = 14 - e;
    if (shift > 24) return sign;
    const m = mant | 0x800000;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent, up to infinity.
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return sign | h;
}

/** number → bfloat16 bit pattern, rounded to nearest, ties to even; NaN stays NaN. */
export function f32ToBf16(x: number): number {
  scratchF32[0] = x;
  const b = scratchU32[0];
  if ((b & 0x7fffffff) > 0x7f800000) return ((b >>> 16) | 0x40) & 0xffff;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

let f16Table: Float32Array | undefined;

/** Widens a whole tensor through a 64K-entry table: far faster than per-element arithmetic on large tensors. */
export function widenF16(bits: Uint16Array): Float32Array {
  if (f16Table === undefined) {
    f16Table = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) f16Table[i] = f16ToF32(i);
  }
  const table = f16Table;
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]];
  return out;
}

function widenBf16(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) u[i] = bits[i] << 16;
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Reading

/**
 * Reads the whole file into one buffer of its own (byteOffset 0, so tensor views are aligned whenever the
 * file aligns them). fs.readFile is avoided because it refuses files over 2 GiB.
 */
export async function readWholeFile(path: string): Promise<Uint8Array> {
  const fh = await open(path, "r");
  try {
    const { size } = await fh.stat();
    const buf = Buffer.allocUnsafeSlow(size);
    await readFully(fh, buf, 0, size, 0, path);
    return buf;
  } finally {
    await fh.close();
  }
}

async function readFully(
  fh: FileHandle,
  buf: Uint8Array,
  offset: number,
  length: number,
  position: number,
  path: string,
): Promise<void> {
  const maxSlice = 1 << 30;
  let done = 0;
  while (done < length) {
    const want = Math.min(maxSlice, length - done);
    const { bytesRead } = await fh.read(buf, offset + done, want, position + done);
    if (bytesRead === 0) throw new SafetensorsError(`${path}: file shrank while being read`);
    done += bytesRead;
  }
}

/** Reads and validates a file. F16 and BF16 are widened to Float32Array (dtype keeps the file's dtype). */
export async function readSafetensors(path: string): Promise<StFile> {
  return parseSafetensors(await readWholeFile(path), path);
}

/**
 * Parses a complete file held in memory. Tensor data are views into `bytes` where the offset is aligned to
 * the element size (no copy for a 350 MB checkpoint), and copies otherwise; F16/BF16 are always new arrays.
 */
export function parseSafetensors(bytes: Uint8Array, source: string): StFile {
  assertLittleEndian();
  const headerLen = readHeaderLength(bytes, bytes.byteLength, source);
  const dataStart = 8 + headerLen;
  const { entries, metadata } = parseHeader(
    bytes.subarray(8, dataStart),
    bytes.byteLength - dataStart,
    source,
  );
  const tensors = new Map<string, StTensor>();
  for (const [name, e] of entries) {
    const data = tensorData(bytes, dataStart, e);
    tensors.set(name, { dtype: e.dtype, shape: e.shape, data });
  }
  return { tensors, metadata };
}

/** Header only (names, dtypes, shapes, metadata), validated against the file size, without reading tensor data. */
export async function readSafetensorsHeader(
  path: string,
): Promise<{ entries: Map<string, StHeaderEntry>; metadata: Record<string, string> }> {
  const fh = await open(path, "r");
  try {
    const { size } = await fh.stat();
    const prefix = new Uint8Array(Math.min(8, size));
    await readFully(fh, prefix, 0, prefix.length, 0, path);
    const headerLen = readHeaderLength(prefix, size, path);
    const header = new Uint8Array(headerLen);
    await readFully(fh, header, 0, headerLen, 8, path);
    return parseHeader(header, size - 8 - headerLen, path);
  } finally {
    await fh.close();
  }
}

/** `prefix` holds at least the first 8 bytes when the file has them; `fileSize` is the whole file's size. */
function readHeaderLength(prefix: Uint8Array, fileSize: number, source: string): number {
  if (fileSize < 8) {
    throw new SafetensorsError(
      `${source}: file is ${fileSize} bytes, shorter than the 8-byte header length of a safetensors file`,
    );
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(fileSize - 8)) {
    throw new SafetensorsError(
      `${source}: header length ${n} goes beyond the end of the file (${fileSize} bytes, so at most ${fileSize - 8})`,
    );
  }
  return Number(n);
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function parseHeader(
  headerBytes: Uint8Array,
  dataSize: number,
  source: string,
): { entries: Map<string, StHeaderEntry>; metadata: Record<string, string> } {
  let header: unknown;
  try {
    header = JSON.parse(utf8.decode(headerBytes));
  } catch (err) {
    throw new SafetensorsError(
      `${source}: header (${headerBytes.length} bytes) is not valid UTF-8 JSON: ${(err as Error).message}`,
    );
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new SafetensorsError(
      `${source}: header must be a JSON object, got ${Array.isArray(header) ? "an array" : typeof header}`,
    );
  }

  const metadata: Record<string, string> = {};
  const entries = new Map<string, StHeaderEntry>();
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    if (name === METADATA_KEY) {
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        throw new SafetensorsError(`${source}: "${METADATA_KEY}" must be an object of strings`);
      }
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== "string") {
          throw new SafetensorsError(
            `${source}: metadata value "${k}" must be a string, got ${JSON.stringify(v)}`,
          );
        }
        // defineProperty: a key such as "__proto__" must stay an ordinary entry.
        Object.defineProperty(metadata, k, {
          value: v,
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      continue;
    }
    entries.set(name, parseEntry(name, value, dataSize, source));
  }
  checkCoverage(entries, dataSize, source);
  return { entries, metadata };
}

function parseEntry(name: string, value: unknown, dataSize: number, source: string): StHeaderEntry {
  const where = `${source}: tensor "${name}"`;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new SafetensorsError(`${where}: header entry must be an object {dtype, shape, data_offsets}`);
  }
  const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
  if (!isDtype(dtype)) {
    throw new SafetensorsError(`${where}: unknown dtype ${JSON.stringify(dtype)} (supported: ${SUPPORTED})`);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new SafetensorsError(
      `${where}: shape must be a list of non-negative integers, got ${JSON.stringify(shape)}`,
    );
  }
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
    offsets[0] > offsets[1]
  ) {
    throw new SafetensorsError(
      `${where}: data_offsets must be [begin, end], integers with 0 <= begin <= end, got ${JSON.stringify(offsets)}`,
    );
  }
  const [begin, end] = offsets as [number, number];
  if (end > dataSize) {
    throw new SafetensorsError(
      `${where}: data_offsets [${begin}, ${end}] go beyond the data buffer (${dataSize} bytes)`,
    );
  }
  const count = elementCount(shape as number[]);
  const expected = count * DTYPES[dtype].size;
  if (end - begin !== expected) {
    throw new SafetensorsError(
      `${where}: data_offsets [${begin}, ${end}] span ${end - begin} bytes, but shape ${JSON.stringify(shape)} ` +
        `of ${dtype} needs ${count} × ${DTYPES[dtype].size} = ${expected} bytes`,
    );
  }
  return { dtype, shape: [...(shape as number[])], offsets: [begin, end] };
}

/** The spec requires the data buffer to be covered exactly: no overlaps (aliasing) and no unused gaps. */
function checkCoverage(entries: Map<string, StHeaderEntry>, dataSize: number, source: string): void {
  const sorted = [...entries].sort(
    ([, a], [, b]) => a.offsets[0] - b.offsets[0] || a.offsets[1] - b.offsets[1],
  );
  let pos = 0;
  let prev: string | undefined;
  for (const [name, e] of sorted) {
    const [begin, end] = e.offsets;
    if (begin < pos) {
      throw new SafetensorsError(
        `${source}: tensor "${name}" at data_offsets [${begin}, ${end}] overlaps tensor "${prev}" (which ends at ${pos})`,
      );
    }
    if (begin > pos) {
      throw new SafetensorsError(
        `${source}: gap of ${begin - pos} unused bytes in the data buffer at [${pos}, ${begin}) before tensor "${name}"` +
          " (the data buffer must be fully covered)",
      );
    }
    pos = end;
    prev = name;
  }
  if (pos !== dataSize) {
    throw new SafetensorsError(
      `${source}: ${dataSize - pos} unused bytes at the end of the data buffer [${pos}, ${dataSize})` +
        `${prev === undefined ? "" : ` after tensor "${prev}"`} (the data buffer must be fully covered)`,
    );
  }
}

function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function tensorData(bytes: Uint8Array, dataStart: number, e: StHeaderEntry): TypedData {
  return decodeValues(bytes.subarray(dataStart + e.offsets[0], dataStart + e.offsets[1]), e.dtype);
}

/** Bytes per element of a dtype in a file. */
export function dtypeSize(dtype: StDtype): number {
  return DTYPES[dtype].size;
}

/**
 * Little-endian values of `dtype` (a whole number of elements): a view on `bytes` when aligned, else a
 * copy; F16 and BF16 are widened to float32. Shared with the .pth reader, whose storages are raw values too.
 */
export function decodeValues(bytes: Uint8Array, dtype: StDtype): TypedData {
  const { size, ctor } = DTYPES[dtype];
  const count = bytes.byteLength / size;
  if (dtype === "F16" || dtype === "BF16") {
    const bits = viewOrCopy(Uint16Array, bytes.buffer, bytes.byteOffset, count, 2);
    return dtype === "F16" ? widenF16(bits) : widenBf16(bits);
  }
  return viewOrCopy(ctor, bytes.buffer, bytes.byteOffset, count, size);
}

/** Typed-array views need offsets aligned to the element size; unaligned data get a copy of their own. */
function viewOrCopy<C extends TypedCtor | Uint16ArrayConstructor>(
  ctor: C,
  buffer: ArrayBufferLike,
  byteOffset: number,
  count: number,
  size: number,
): InstanceType<C> {
  const Ctor = ctor as unknown as new (b: ArrayBufferLike, o?: number, n?: number) => InstanceType<C>;
  if (byteOffset % size === 0) return new Ctor(buffer, byteOffset, count);
  const copy = new Uint8Array(count * size);
  copy.set(new Uint8Array(buffer, byteOffset, count * size));
  return new Ctor(copy.buffer, 0, count);
}

// ---------------------------------------------------------------------------------------------------------
// Writing

function expectedCtorName(dtype: StDtype): string {
  return DTYPES[dtype].ctor.name;
}

/** Raw little-endian bytes of one tensor; a view on the caller's memory except for F16/BF16. */
function encodeTensor(name: string, t: StTensor): Uint8Array {
  const where = `safetensors writer: tensor "${name}"`;
  if (!isDtype(t.dtype)) {
    throw new SafetensorsError(
      `${where}: unknown dtype ${JSON.stringify(t.dtype)} (supported: ${SUPPORTED})`,
    );
  }
  if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new SafetensorsError(
      `${where}: shape must be a list of non-negative integers, got ${JSON.stringify(t.shape)}`,
    );
  }
  const { ctor } = DTYPES[t.dtype];
  // Exact class check: a Buffer is a Uint8Array and is fine; a Float32Array must not pass for an I32 tensor.
  if (!(t.data instanceof ctor)) {
    throw new SafetensorsError(
      `${where}: dtype ${t.dtype} needs a ${expectedCtorName(t.dtype)}, got ${t.data?.constructor?.name ?? typeof t.data}`,
    );
  }
  const count = elementCount(t.shape);
  if (t.data.length !== count) {
    throw new SafetensorsError(
      `${where}: data has ${t.data.length} elements, but shape ${JSON.stringify(t.shape)} needs ${count}`,
    );
  }
  if (t.dtype === "BOOL") {
    const d = t.data as Uint8Array;
    for (let i = 0; i < d.length; i++) {
      if (d[i] > 1) throw new SafetensorsError(`${where}: BOOL value ${d[i]} at index ${i} is not 0 or 1`);
    }
  }
  if (t.dtype === "F16" || t.dtype === "BF16") {
    const src = t.data as Float32Array;
    const bits = new Uint16Array(src.length);
    const narrow = t.dtype === "F16" ? f32ToF16 : f32ToBf16;
    for (let i = 0; i < src.length; i++) bits[i] = narrow(src[i]);
    return new Uint8Array(bits.buffer);
  }
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/**
 * The file as a list of chunks: [length + header, tensor bytes…]. Tensors are sorted by name, in the
 * header and in the data buffer, as the reference files are; the header is padded with spaces so the data
 * buffer starts 8-byte aligned. `__metadata__` comes first and is omitted when there is none.
 * Tensor chunks alias the caller's arrays (no copy), so do not modify them before the chunks are written.
 */
export function serializeSafetensors(
  tensors: Map<string, StTensor> | Record<string, StTensor>,
  metadata?: Record<string, string>,
): Uint8Array[] {
  assertLittleEndian();
  const list = (tensors instanceof Map ? [...tensors] : Object.entries(tensors)).sort(([a], [b]) =>
    a < b ? -1 : a > b ? 1 : 0,
  );
  const parts: string[] = [];
  if (metadata !== undefined && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") {
        throw new SafetensorsError(
          `safetensors writer: metadata value "${k}" must be a string, got ${JSON.stringify(v)}`,
        );
      }
    }
    parts.push(`${JSON.stringify(METADATA_KEY)}:${JSON.stringify(metadata)}`);
  }
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of list) {
    if (name === METADATA_KEY) {
      throw new SafetensorsError(
        `safetensors writer: "${METADATA_KEY}" is reserved and cannot name a tensor`,
      );
    }
    const bytes = encodeTensor(name, t);
    parts.push(
      `${JSON.stringify(name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(",")}],` +
        `"data_offsets":[${offset},${offset + bytes.byteLength}]}`,
    );
    offset += bytes.byteLength;
    chunks.push(bytes);
  }
  const json = Buffer.from(`{${parts.join(",")}}`, "utf8");
  const padded = Math.ceil((8 + json.length) / 8) * 8 - 8;
  const head = new Uint8Array(8 + padded);
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(json, 8);
  head.fill(0x20, 8 + json.length);
  return [head, ...chunks];
}

/** Atomic (temp file + rename): either the complete new file or the old one is at `path`, never a partial one. */
export async function writeSafetensors(
  path: string,
  tensors: Map<string, StTensor> | Record<string, StTensor>,
  metadata?: Record<string, string>,
): Promise<void> {
  await writeFileAtomic(path, serializeSafetensors(tensors, metadata));
}
