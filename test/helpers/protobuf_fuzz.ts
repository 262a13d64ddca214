/**
 * Hostile protobuf for the fuzz tests (issue #15, hostile bytes): a seeded generator, byte-level mutations
 * of valid messages (bit flips, truncation, inserted and deleted bytes, length prefixes that lie, wrong wire
 * types, huge varints, other messages spliced in) and value-level ones (a valid message with one field
 * made hostile: NaN, negative or enormous sizes, shapes that do not match their data, absurd strings).
 */
import { mulberry32 } from "./tiny_vit.js";

export class Rng {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  float(): number {
    return this.next();
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
  bytes(n: number): Buffer {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
}

export function varint(v: bigint): Buffer {
  const out: number[] = [];
  let x = BigInt.asUintN(64, v);
  do {
    let b = Number(x & 0x7fn);
    x >>= 7n;
    if (x !== 0n) b |= 0x80;
    out.push(b);
  } while (x !== 0n);
  return Buffer.from(out);
}

function readVarint(buf: Buffer, at: number): { value: bigint; end: number } | undefined {
  let value = 0n;
  for (let i = 0; i < 10 && at + i < buf.length; i++) {
    value |= BigInt(buf[at + i] & 0x7f) << BigInt(7 * i);
    if ((buf[at + i] & 0x80) === 0) return { value, end: at + i + 1 };
  }
  return undefined;
}

interface Field {
  /** Offset of the tag. */
  readonly tagAt: number;
  readonly tagEnd: number;
  readonly wireType: number;
  /** Length-delimited fields: where the length varint is and what it says. */
  readonly lenAt?: number;
  readonly lenEnd?: number;
  readonly len?: number;
}

/** The fields of a message, and of every length-delimited field that itself parses as one; best effort. */
export function scanFields(buf: Buffer, from = 0, to = buf.length, depth = 0): Field[] {
  const out: Field[] = [];
  let at = from;
  while (at < to) {
    const tag = readVarint(buf, at);
    if (!tag || tag.end > to) return out;
    const wireType = Number(tag.value & 7n);
    const field = Number(tag.value >> 3n);
    if (field < 1) return out;
    if (wireType === 0) {
      const v = readVarint(buf, tag.end);
      if (!v || v.end > to) return out;
      out.push({ tagAt: at, tagEnd: tag.end, wireType });
      at = v.end;
    } else if (wireType === 1 || wireType === 5) {
      const end = tag.end + (wireType === 1 ? 8 : 4);
      if (end > to) return out;
      out.push({ tagAt: at, tagEnd: tag.end, wireType });
      at = end;
    } else if (wireType === 2) {
      const l = readVarint(buf, tag.end);
      if (!l || l.end + Number(l.value) > to) return out;
      const len = Number(l.value);
      out.push({ tagAt: at, tagEnd: tag.end, wireType, lenAt: tag.end, lenEnd: l.end, len });
      if (depth < 6 && len > 0) out.push(...scanFields(buf, l.end, l.end + len, depth + 1));
      at = l.end + len;
    } else {
      return out;
    }
  }
  return out;
}

const INTERESTING_BYTES = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x08, 0x0a, 0x12];
const INTERESTING_VARINTS = [
  0n,
  1n,
  127n,
  128n,
  2n ** 31n - 1n,
  2n ** 32n - 1n,
  2n ** 53n + 1n,
  2n ** 63n,
  -1n,
];

export interface Mutated {
  readonly bytes: Buffer;
  readonly how: string;
}

/** One random byte-level mutation of `buf`; `others` are messages of other types to splice from. */
export function mutateOnce(rng: Rng, buf: Buffer, others: readonly Buffer[]): Mutated {
  const fields = scanFields(buf);
  const lens = fields.filter((f) => f.lenAt !== undefined);
  const kind = rng.int(13);
  const at = rng.int(buf.length + 1);
  switch (kind) {
    case 0: {
      const out = Buffer.from(buf);
      const flips = 1 + rng.int(8);
      for (let i = 0; i < flips && out.length; i++) out[rng.int(out.length)] ^= 1 << rng.int(8);
      return { bytes: out, how: `${flips} bit flips` };
    }
    case 1: {
      const out = Buffer.from(buf);
      if (out.length) out[rng.int(out.length)] = rng.pick(INTERESTING_BYTES);
      return { bytes: out, how: "a byte set to an edge value" };
    }
    case 2:
      return { bytes: buf.subarray(0, at), how: `truncated to ${at} bytes` };
    case 3: {
      const extra = rng.bytes(1 + rng.int(64));
      return {
        bytes: Buffer.concat([buf.subarray(0, at), extra, buf.subarray(at)]),
        how: "random bytes inserted",
      };
    }
    case 4: {
      const n = 1 + rng.int(Math.max(1, buf.length - at));
      return { bytes: Buffer.concat([buf.subarray(0, at), buf.subarray(at + n)]), how: "a range deleted" };
    }
    case 5: {
      const n = 1 + rng.int(Math.max(1, Math.min(256, buf.length - at)));
      const range = buf.subarray(at, at + n);
      return {
        bytes: Buffer.concat([buf.subarray(0, at), range, range, buf.subarray(at + n)]),
        how: "a range repeated",
      };
    }
    case 6:
    case 7: {
      if (!lens.length) return { bytes: rng.bytes(rng.int(64)), how: "random bytes" };
      const f = rng.pick(lens);
      const lie = rng.pick([
        BigInt(f.len! + 1),
        BigInt(Math.max(0, f.len! - 1)),
        BigInt(f.len! * 2 + 7),
        2n ** 31n - 1n,
        2n ** 32n - 1n,
        2n ** 32n + 5n,
        2n ** 62n,
        -1n,
      ]);
      const bytes = Buffer.concat([buf.subarray(0, f.lenAt), varint(lie), buf.subarray(f.lenEnd)]);
      return { bytes, how: `a length prefix of ${f.len} that says ${lie}` };
    }
    case 8: {
      if (!fields.length) return { bytes: rng.bytes(rng.int(64)), how: "random bytes" };
      const f = rng.pick(fields);
      const tag = readVarint(buf, f.tagAt)!;
      const wire = BigInt(rng.pick([0, 1, 2, 3, 4, 5, 6, 7].filter((w) => w !== f.wireType)));
      const bytes = Buffer.concat([
        buf.subarray(0, f.tagAt),
        varint((tag.value & ~7n) | wire),
        buf.subarray(f.tagEnd),
      ]);
      return { bytes, how: `a field's wire type ${f.wireType} changed to ${wire}` };
    }
    case 9: {
      // A known or unknown field number with a huge varint, fixed64 or length, appended or prepended.
      const field = BigInt(rng.pick([1, 2, 3, 4, 5, 6, 7, 15, 536870911]));
      const value = rng.pick(INTERESTING_VARINTS);
      const extra = rng.chance(0.5)
        ? Buffer.concat([varint(field << 3n), varint(value)])
        : Buffer.concat([varint((field << 3n) | 2n), varint(value)]);
      return {
        bytes: rng.chance(0.5) ? Buffer.concat([buf, extra]) : Buffer.concat([extra, buf]),
        how: `field ${field} with varint ${value} added`,
      };
    }
    case 10:
      return { bytes: rng.bytes(rng.int(300)), how: "random bytes" };
    case 11:
      return { bytes: Buffer.alloc(0), how: "empty" };
    default: {
      const other = others.length ? rng.pick(others) : rng.bytes(32);
      return {
        bytes: rng.chance(0.5) ? other : Buffer.concat([buf.subarray(0, at), other]),
        how: "another message type spliced in",
      };
    }
  }
}

/** One to three mutations in a row. */
export function mutate(rng: Rng, buf: Buffer, others: readonly Buffer[]): Mutated {
  let out: Mutated = { bytes: buf, how: "" };
  const n = 1 + rng.int(3);
  const hows: string[] = [];
  for (let i = 0; i < n; i++) {
    out = mutateOnce(rng, out.bytes, others);
    hows.push(out.how);
  }
  return { bytes: out.bytes, how: hows.join(", then ") };
}

const HOSTILE_NUMBERS = [
  0,
  -1,
  -(2 ** 31),
  1,
  2 ** 31 - 1,
  2 ** 32 - 1,
  2 ** 53 - 1,
  -(2 ** 53) + 1,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  1e308,
  -0,
  0.5,
];
const HOSTILE_STRINGS = [
  "",
  " ",
  "\u0000",
  "x".repeat(100_000),
  "../../../../etc/passwd",
  "/dev/zero",
  "/dev/urandom",
  "/proc/self/mem",
  "/",
  "\ud83d\ude00 \u202e",
  "%s%n%x",
];
const F32_SPECIALS = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 3.4e38, -0];

interface TensorLike {
  dtype: number;
  shape: number[];
  data: Uint8Array;
}

function isTensor(v: unknown): v is TensorLike {
  return typeof v === "object" && v !== null && "dtype" in v && "shape" in v && "data" in v;
}

function hostileTensor(rng: Rng, t: TensorLike): { value: TensorLike; how: string } {
  // Elements of the replacement data: the shape may already be a hostile one.
  const n = Math.max(1, Math.min(Math.floor(t.data.length / 4), 1024));
  // The tensor's own shape when it still describes n elements (a value check, not a shape check, is hit).
  const shape = t.shape.reduce((a, b) => a * b, 1) === n ? t.shape : [n];
  switch (rng.int(9)) {
    case 0: {
      const data = new Float32Array(n);
      data.fill(0.25);
      data[rng.int(data.length)] = rng.pick(F32_SPECIALS);
      return {
        value: { dtype: 1, shape, data: new Uint8Array(data.buffer) },
        how: "a float32 tensor with a non-finite or extreme value",
      };
    }
    case 1: {
      const shape = rng.pick([
        [-1],
        [2 ** 31],
        [2 ** 53 - 1],
        [2 ** 26, 2 ** 26],
        [0, 2 ** 40],
        [2 ** 40, 0],
      ]);
      return { value: { ...t, shape }, how: `shape [${shape.join(", ")}] over ${t.data.length} bytes` };
    }
    case 2: {
      const shape = [...t.shape, 1];
      shape[0] = (shape[0] ?? 1) + 1;
      return { value: { ...t, shape }, how: "a shape that does not match the data" };
    }
    case 3: {
      const dtype = rng.pick([0, 2, 3, 4, 5, 99, -1]);
      return { value: { ...t, dtype }, how: `dtype ${dtype}` };
    }
    case 4:
      return { value: { ...t, data: t.data.subarray(0, rng.int(t.data.length + 1)) }, how: "data cut short" };
    case 5:
      return {
        value: { ...t, shape: Array.from({ length: 1000 }, () => 1) },
        how: "a 1000-dimensional shape",
      };
    case 6: {
      const data = new Int32Array(n);
      data.fill(1);
      data[rng.int(data.length)] = rng.pick([-1, 2 ** 31 - 1, -(2 ** 31), 60_000]);
      return {
        value: { dtype: 3, shape, data: new Uint8Array(data.buffer) },
        how: "an int32 tensor with a negative or huge index",
      };
    }
    case 7:
      return {
        value: { dtype: t.dtype, shape: [], data: new Uint8Array(0) },
        how: "a scalar shape, no data",
      };
    default:
      return { value: { dtype: 1, shape: [1 << 18], data: new Uint8Array(1 << 20) }, how: "a 1 MiB tensor" };
  }
}

/** Paths to every leaf (number, string, boolean, number array, tensor) of a decoded message. */
type Path = (string | number)[];

function leaves(obj: unknown, path: Path = [], out: Path[] = [], lists: Path[] = []): Path[] {
  if (isTensor(obj) || typeof obj !== "object" || obj === null || obj instanceof Uint8Array) {
    if (path.length) out.push(path);
    return out;
  }
  if (Array.isArray(obj) && obj.every((v) => typeof v === "number")) {
    out.push(path);
    return out;
  }
  if (Array.isArray(obj) && obj.length && typeof obj[0] === "object" && !isTensor(obj[0])) lists.push(path);
  for (const [k, v] of Object.entries(obj)) {
    // The oneof's discriminator is not on the wire.
    if (v === undefined || k === "$case") continue;
    leaves(v, [...path, Array.isArray(obj) ? Number(k) : k], out, lists);
  }
  return out;
}

function parentOf(root: unknown, path: Path): Record<string | number, unknown> {
  let parent = root as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>;
  return parent;
}

function structuredCopy<T>(v: T): T {
  return structuredClone(v);
}

/**
 * A copy of the decoded message `msg` with one or two leaves made hostile (a repeated list may also be
 * blown up or emptied). `how` says what changed, for failure messages.
 */
export function hostilize<T extends object>(rng: Rng, msg: T): { value: T; how: string } {
  const value = structuredCopy(msg);
  const hows: string[] = [];
  // Repeated message fields first (emptied or multiplied, copies of valid entries), then one or two leaves.
  const lists: Path[] = [];
  leaves(value, [], [], lists);
  if (lists.length && rng.chance(0.15)) {
    const path = rng.pick(lists);
    const parent = parentOf(value, path);
    const key = path[path.length - 1];
    const list = parent[key] as unknown[];
    const n = rng.pick([0, 64, 1000]);
    parent[key] = Array.from({ length: n }, (_, i) => structuredCopy(list[i % list.length]));
    hows.push(`${path.join(".")}: ${n} entries`);
  }
  const paths = leaves(value);
  const changes = 1 + rng.int(2);
  for (let c = 0; c < changes && paths.length; c++) {
    const path = rng.pick(paths);
    const parent = parentOf(value, path);
    const key = path[path.length - 1];
    const old = parent[key];
    const where = path.join(".");
    if (isTensor(old)) {
      const t = hostileTensor(rng, old);
      parent[key] = t.value;
      hows.push(`${where}: ${t.how}`);
    } else if (typeof old === "number") {
      const v = rng.pick(HOSTILE_NUMBERS);
      parent[key] = v;
      hows.push(`${where} = ${v}`);
    } else if (typeof old === "string") {
      const v = rng.pick(HOSTILE_STRINGS);
      parent[key] = v;
      hows.push(`${where} = ${JSON.stringify(v.slice(0, 20))}${v.length > 20 ? "…" : ""}`);
    } else if (typeof old === "boolean") {
      parent[key] = !old;
      hows.push(`${where} flipped`);
    } else if (Array.isArray(old)) {
      const v = rng.chance(0.5)
        ? []
        : Array.from({ length: rng.pick([5, 1000]) }, () => rng.pick(HOSTILE_NUMBERS));
      parent[key] = v;
      hows.push(`${where}: ${v.length} hostile values`);
    }
  }
  return { value, how: hows.join("; ") };
}
