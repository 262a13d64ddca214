/**
 * A restricted reader of Python pickles: a table from opcode to a small handler over one stack machine.
 * It builds numbers, strings, bytes, lists, tuples (as arrays) and dicts (as Maps) itself; every other
 * object comes from a global the caller allows, by name, with a handler that builds data and runs nothing.
 * Any other global is refused, naming it, so a pickle can never run code here.
 */

/** A Python 2 `str` (raw bytes); `encoding='latin1'` reads it as text, numpy as array data. */
export class Latin1String {
  constructor(readonly bytes: Uint8Array) {}
  toString(): string {
    return Buffer.from(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength).toString("latin1");
  }
}

/** What allowed globals build (numpy arrays, tensors, …); BUILD hands them their state. */
export abstract class PyObject {
  setState(_state: PyValue, fail: Fail): void {
    fail(`BUILD on ${this.constructor.name}`);
  }
}

export type PyValue =
  | null
  | boolean
  | number
  | string
  | Uint8Array
  | Latin1String
  | PyObject
  | PyValue[]
  | Map<string | number, PyValue>;

export type Fail = (detail: string) => never;

/** What an allowed global does; a global with neither is only passed around (a class used as a tag). */
export interface PyGlobalHandler {
  /** REDUCE: `global(*args)`. */
  readonly call?: (args: PyValue[], fail: Fail) => PyValue;
  /** NEWOBJ: `global.__new__(global, *args)`. */
  readonly create?: (args: PyValue[], fail: Fail) => PyValue;
}

/** An allowed global on the stack. */
export class PyGlobal extends PyObject {
  constructor(
    readonly name: string,
    readonly handler: PyGlobalHandler,
  ) {
    super();
  }
}

export interface PickleOptions {
  /** Allowed globals by `module.name`; every other one is refused. */
  readonly globals: ReadonlyMap<string, PyGlobalHandler>;
  /** BINPERSID: resolves a persistent id (PyTorch's storages); without it persistent ids are refused. */
  readonly persistentLoad?: (pid: PyValue, fail: Fail) => PyValue;
  /** Appended to the refusal of a global, e.g. how to allow it. */
  readonly refusalHint?: (global: string) => string;
}

export class PickleError extends Error {
  override readonly name = "PickleError";
  constructor(
    /** The message without the source. */
    readonly detail: string,
    readonly source: string,
  ) {
    super(`${source}: ${detail}`);
  }
}

/** Plain data that Python 3 pickles through globals at protocol 2: OrderedDicts and bytes. */
export const PLAIN_GLOBALS: ReadonlyMap<string, PyGlobalHandler> = new Map<string, PyGlobalHandler>([
  ["collections.OrderedDict", { call: orderedDict }],
  ["_codecs.encode", { call: codecsEncode }],
  ["__builtin__.bytearray", { call: bytearray }],
  ["builtins.bytearray", { call: bytearray }],
]);

export function pyText(v: PyValue | undefined): string | undefined {
  if (typeof v === "string") return v;
  if (v instanceof Latin1String) return v.toString();
  return undefined;
}

export function asBytes(v: PyValue | undefined): Uint8Array | undefined {
  if (v instanceof Uint8Array) return v;
  if (v instanceof Latin1String) return v.bytes;
  // encoding='latin1' in Python decodes a Python 2 str to text; numpy encodes it back the same way.
  if (typeof v === "string") return new Uint8Array(Buffer.from(v, "latin1"));
  return undefined;
}

/** Reads one pickle; `source` names it in errors (a file, or a file and an archive entry). */
export function parsePickle(bytes: Uint8Array, source: string, opts: PickleOptions): PyValue {
  const m = new Machine(bytes, source, opts);
  for (;;) {
    m.at = m.pos;
    const op = m.u8();
    const handler = OPCODES[op];
    if (handler === undefined) {
      const name = REFUSED_OPCODES[op];
      return m.fail(`unsupported opcode 0x${op.toString(16).padStart(2, "0")}${name ? ` (${name})` : ""}`);
    }
    handler(m);
    if (m.result !== NOTHING) return m.result;
  }
}

// ---------------------------------------------------------------------------------------------------------

const MARK = Symbol("mark");
const NOTHING = Symbol("nothing");

/** The stack, the memo and the byte reader the handlers share. */
class Machine {
  pos = 0;
  /** Where the current opcode starts, for messages. */
  at = 0;
  result: PyValue | typeof NOTHING = NOTHING;
  readonly stack: (PyValue | typeof MARK)[] = [];
  readonly memo = new Map<number, PyValue>();
  private readonly view: DataView;

  constructor(
    readonly bytes: Uint8Array,
    readonly source: string,
    readonly opts: PickleOptions,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  readonly fail: Fail = (detail) => {
    const op = OPCODE_NAMES[this.bytes[this.at]];
    throw new PickleError(
      `not a readable pickle: ${detail} at byte ${this.at}${op ? ` (${op})` : ""}`,
      this.source,
    );
  };

  private need(n: number): number {
    if (n < 0 || this.pos + n > this.bytes.length) this.fail(`truncated (needs ${n} more bytes)`);
    const at = this.pos;
    this.pos += n;
    return at;
  }
  u8 = () => this.bytes[this.need(1)];
  u16 = () => this.view.getUint16(this.need(2), true);
  i32 = () => this.view.getInt32(this.need(4), true);
  u32 = () => this.view.getUint32(this.need(4), true);
  f64be = () => this.view.getFloat64(this.need(8), false);
  u64 = (): number => {
    const v = this.view.getBigUint64(this.need(8), true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail("length too large");
    return Number(v);
  };
  take = (n: number): Uint8Array => {
    const at = this.need(n);
    return this.bytes.subarray(at, at + n);
  };
  line = (): string => {
    const end = this.bytes.indexOf(0x0a, this.pos);
    if (end < 0) this.fail("unterminated line");
    const s = Buffer.from(this.bytes.buffer, this.bytes.byteOffset + this.pos, end - this.pos).toString(
      "latin1",
    );
    this.pos = end + 1;
    return s;
  };
  /** INT, LONG, PUT, GET: decimal text; protocol 0 writes False as I00 and True as I01. */
  textInt = (): number => {
    const t = this.line().trim().replace(/L$/, "");
    if (t === "00" || t === "01") return Number(t);
    const v = Number(t);
    if (!Number.isSafeInteger(v)) this.fail(`integer ${t} out of range`);
    return v;
  };
  /** LONG1, LONG4: little-endian two's complement. */
  longBytes = (b: Uint8Array): number => {
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b.length > 0 && b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER))
      this.fail("integer out of range");
    return Number(v);
  };

  push = (v: PyValue | typeof MARK): void => {
    this.stack.push(v);
  };
  pop = (): PyValue => {
    const v = this.stack.pop();
    if (v === undefined || v === MARK) this.fail("stack underflow");
    return v as PyValue;
  };
  /** The top n items, in the order they were pushed. */
  popN = (n: number): PyValue[] => {
    const out = new Array<PyValue>(n);
    for (let i = n - 1; i >= 0; i--) out[i] = this.pop();
    return out;
  };
  popMark = (): PyValue[] => {
    const at = this.stack.lastIndexOf(MARK);
    if (at < 0) this.fail("no MARK on the stack");
    return this.stack.splice(at).slice(1) as PyValue[];
  };
  top = (): PyValue => {
    const v = this.stack[this.stack.length - 1];
    if (v === undefined || v === MARK) this.fail("stack underflow");
    return v as PyValue;
  };
  fromMemo = (i: number): PyValue => {
    const v = this.memo.get(i);
    if (v === undefined) this.fail(`memo entry ${i} missing`);
    return v as PyValue;
  };

  append = (items: PyValue[]): void => {
    const list = this.top();
    if (!Array.isArray(list)) this.fail("APPEND(S) on a non-list");
    (list as PyValue[]).push(...items);
  };
  setItems = (dict: PyValue, items: PyValue[]): void => {
    if (!(dict instanceof Map)) this.fail("SETITEM(S) on a non-dict");
    for (let i = 0; i + 1 < items.length; i += 2) {
      const k = items[i];
      const key = typeof k === "number" ? k : pyText(k);
      if (key === undefined) this.fail("unsupported dict key type");
      (dict as Map<string | number, PyValue>).set(key as string | number, items[i + 1]);
    }
  };

  global = (module: string | undefined, name: string | undefined): PyGlobal => {
    if (module === undefined || name === undefined) this.fail("STACK_GLOBAL needs two strings");
    const full = `${module}.${name}`;
    const handler = this.opts.globals.get(full);
    if (handler === undefined) {
      const hint = this.opts.refusalHint === undefined ? "" : ` (${this.opts.refusalHint(full)})`;
      throw new PickleError(`refusing global ${full} at byte ${this.at}${hint}`, this.source);
    }
    return new PyGlobal(full, handler);
  };
  reduce = (fn: PyValue, args: PyValue): PyValue => {
    if (!(fn instanceof PyGlobal) || !Array.isArray(args)) this.fail("REDUCE of a non-callable");
    const { name, handler } = fn as PyGlobal;
    if (handler.call === undefined) this.fail(`${name} cannot be called`);
    return handler.call!(args as PyValue[], this.fail);
  };
  newObject = (cls: PyValue, args: PyValue): PyValue => {
    if (!(cls instanceof PyGlobal) || !Array.isArray(args)) this.fail("NEWOBJ of a non-class");
    const { name, handler } = cls as PyGlobal;
    if (handler.create === undefined) this.fail(`${name} cannot be instantiated`);
    return handler.create!(args as PyValue[], this.fail);
  };
  build = (obj: PyValue, state: PyValue): void => {
    if (obj instanceof PyObject) obj.setState(state, this.fail);
    // A dict's BUILD state is its attributes (a state_dict's `_metadata`), never items: dropped.
    else if (!(obj instanceof Map) || !(state instanceof Map)) this.fail("BUILD on an unsupported object");
  };
  persistent = (pid: PyValue): PyValue => {
    if (this.opts.persistentLoad === undefined) this.fail("persistent ids are not supported here");
    return this.opts.persistentLoad!(pid, this.fail);
  };
}

type Handler = (m: Machine) => void;

const UTF8 = new TextDecoder("utf-8", { fatal: false });
const utf8 = (b: Uint8Array) => UTF8.decode(b);

// biome-ignore format: one opcode per line keeps the machine on one screen
const OPCODE_LIST: readonly [number, string, Handler][] = [
  [0x80, "PROTO", (m) => { if (m.u8() > 5) m.fail("unsupported pickle protocol"); }],
  [0x95, "FRAME", (m) => void m.u64()],
  [0x2e, "STOP", (m) => { m.result = m.pop(); }],
  [0x28, "MARK", (m) => m.push(MARK)],
  [0x30, "POP", (m) => void m.pop()],
  [0x31, "POP_MARK", (m) => void m.popMark()],
  [0x32, "DUP", (m) => m.push(m.top())],
  [0x4e, "NONE", (m) => m.push(null)],
  [0x88, "NEWTRUE", (m) => m.push(true)],
  [0x89, "NEWFALSE", (m) => m.push(false)],
  [0x49, "INT", (m) => m.push(m.textInt())],
  [0x4c, "LONG", (m) => m.push(m.textInt())],
  [0x4a, "BININT", (m) => m.push(m.i32())],
  [0x4b, "BININT1", (m) => m.push(m.u8())],
  [0x4d, "BININT2", (m) => m.push(m.u16())],
  [0x8a, "LONG1", (m) => m.push(m.longBytes(m.take(m.u8())))],
  [0x8b, "LONG4", (m) => m.push(m.longBytes(m.take(m.i32())))],
  [0x46, "FLOAT", (m) => m.push(Number(m.line()))],
  [0x47, "BINFLOAT", (m) => m.push(m.f64be())],
  [0x53, "STRING", (m) => m.push(new Latin1String(quotedRepr(m.line().trim(), m.fail)))],
  [0x54, "BINSTRING", (m) => m.push(new Latin1String(m.take(m.i32())))],
  [0x55, "SHORT_BINSTRING", (m) => m.push(new Latin1String(m.take(m.u8())))],
  [0x56, "UNICODE", (m) => m.push(m.line().replace(/\\u([0-9a-fA-F]{4})/g, (_, h: string) => String.fromCharCode(Number.parseInt(h, 16))))],
  [0x58, "BINUNICODE", (m) => m.push(utf8(m.take(m.u32())))],
  [0x8c, "SHORT_BINUNICODE", (m) => m.push(utf8(m.take(m.u8())))],
  [0x8d, "BINUNICODE8", (m) => m.push(utf8(m.take(m.u64())))],
  [0x42, "BINBYTES", (m) => m.push(m.take(m.u32()))],
  [0x43, "SHORT_BINBYTES", (m) => m.push(m.take(m.u8()))],
  [0x8e, "BINBYTES8", (m) => m.push(m.take(m.u64()))],
  [0x96, "BYTEARRAY8", (m) => m.push(m.take(m.u64()))],
  [0x29, "EMPTY_TUPLE", (m) => m.push([])],
  [0x74, "TUPLE", (m) => m.push(m.popMark())],
  [0x85, "TUPLE1", (m) => m.push(m.popN(1))],
  [0x86, "TUPLE2", (m) => m.push(m.popN(2))],
  [0x87, "TUPLE3", (m) => m.push(m.popN(3))],
  [0x5d, "EMPTY_LIST", (m) => m.push([])],
  [0x6c, "LIST", (m) => m.push(m.popMark())],
  [0x61, "APPEND", (m) => m.append(m.popN(1))],
  [0x65, "APPENDS", (m) => m.append(m.popMark())],
  [0x7d, "EMPTY_DICT", (m) => m.push(new Map())],
  [0x64, "DICT", (m) => { const d = new Map(); m.setItems(d, m.popMark()); m.push(d); }],
  [0x73, "SETITEM", (m) => { const kv = m.popN(2); m.setItems(m.top(), kv); }],
  [0x75, "SETITEMS", (m) => { const kv = m.popMark(); m.setItems(m.top(), kv); }],
  [0x63, "GLOBAL", (m) => m.push(m.global(m.line(), m.line()))],
  [0x93, "STACK_GLOBAL", (m) => { const [mod, name] = m.popN(2); m.push(m.global(pyText(mod), pyText(name))); }],
  [0x52, "REDUCE", (m) => { const [fn, args] = m.popN(2); m.push(m.reduce(fn, args)); }],
  [0x81, "NEWOBJ", (m) => { const [cls, args] = m.popN(2); m.push(m.newObject(cls, args)); }],
  [0x62, "BUILD", (m) => { const state = m.pop(); m.build(m.top(), state); }],
  [0x51, "BINPERSID", (m) => m.push(m.persistent(m.pop()))],
  [0x70, "PUT", (m) => m.memo.set(m.textInt(), m.top())],
  [0x71, "BINPUT", (m) => m.memo.set(m.u8(), m.top())],
  [0x72, "LONG_BINPUT", (m) => m.memo.set(m.u32(), m.top())],
  [0x94, "MEMOIZE", (m) => m.memo.set(m.memo.size, m.top())],
  [0x67, "GET", (m) => m.push(m.fromMemo(m.textInt()))],
  [0x68, "BINGET", (m) => m.push(m.fromMemo(m.u8()))],
  [0x6a, "LONG_BINGET", (m) => m.push(m.fromMemo(m.u32()))],
];

const OPCODES: (Handler | undefined)[] = [];
const OPCODE_NAMES: string[] = [];
for (const [code, name, handler] of OPCODE_LIST) {
  OPCODES[code] = handler;
  OPCODE_NAMES[code] = name;
}

/** Opcodes refused on purpose, named in the error: they build arbitrary objects or need outside state. */
const REFUSED_OPCODES: Readonly<Record<number, string>> = {
  105: "INST",
  111: "OBJ",
  146: "NEWOBJ_EX",
  80: "PERSID",
  130: "EXT1",
  131: "EXT2",
  132: "EXT4",
  151: "NEXT_BUFFER",
  152: "READONLY_BUFFER",
};

// --------------------------------------------------------------------------------------- plain globals

function orderedDict(args: PyValue[], fail: Fail): PyValue {
  if (args.length !== 0) fail("collections.OrderedDict with arguments");
  return new Map();
}

/** `_codecs.encode(text, 'latin1')`: how Python 3 pickles bytes at protocol < 3. */
function codecsEncode(args: PyValue[], fail: Fail): PyValue {
  const text = pyText(args[0]);
  const enc = pyText(args[1])?.toLowerCase().replace(/[-_]/g, "");
  if (text === undefined || (enc !== "latin1" && enc !== "iso88591")) fail("unsupported _codecs.encode call");
  return new Uint8Array(Buffer.from(text as string, "latin1"));
}

function bytearray(args: PyValue[], fail: Fail): PyValue {
  if (args.length === 0) return new Uint8Array(0);
  const b = asBytes(args[0]);
  if (b === undefined) fail("unsupported bytearray argument");
  return b as Uint8Array;
}

/** A STRING opcode's argument: a quoted Python 2 repr. */
function quotedRepr(text: string, fail: Fail): Uint8Array {
  const q = text[0];
  if ((q !== "'" && q !== '"') || text.length < 2 || text[text.length - 1] !== q) fail("malformed STRING");
  const s = text.slice(1, -1);
  const simple: Readonly<Record<string, number>> = {
    n: 10,
    r: 13,
    t: 9,
    "\\": 92,
    "'": 39,
    '"': 34,
    a: 7,
    b: 8,
    f: 12,
    v: 11,
    "0": 0,
  };
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] !== "\\") {
      out.push(s.charCodeAt(i) & 0xff);
      continue;
    }
    const n = s[++i];
    if (n === "x") {
      out.push(Number.parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (/[0-7]/.test(n) && /[0-7]/.test(s[i + 1] ?? "")) {
      let j = i;
      while (j < i + 3 && /[0-7]/.test(s[j] ?? "")) j++;
      out.push(Number.parseInt(s.slice(i, j), 8) & 0xff);
      i = j - 1;
    } else if (n in simple) out.push(simple[n]);
    else out.push(92, n.charCodeAt(0) & 0xff);
  }
  return Uint8Array.from(out);
}
