import { DataError } from "./errors.js";

/**
 * A small, strict reader for the Python pickles datasets ship in (torchvision's CIFAR files): plain
 * containers, numbers, strings, bytes and numpy arrays. Anything else — arbitrary classes, persistent ids,
 * extension codes, out-of-band buffers — is refused, so a pickle can never run code here.
 */

/** A Python 2 `str` (raw bytes); `encoding='latin1'` reads it as text, numpy as array data. */
export class Latin1String {
  constructor(readonly bytes: Uint8Array) {}
  toString(): string {
    return Buffer.from(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength).toString("latin1");
  }
}

export class NumpyDtype {
  byteOrder = "|";
  constructor(readonly descr: string) {}
}

/** A numpy array: raw bytes in C (or Fortran) order. */
export class NumpyArray {
  shape: number[] = [0];
  dtype: NumpyDtype = new NumpyDtype("u1");
  fortran = false;
  data: Uint8Array = new Uint8Array(0);
}

export type PyValue =
  | null
  | boolean
  | number
  | string
  | Uint8Array
  | Latin1String
  | NumpyArray
  | NumpyDtype
  | PyValue[]
  | Map<string | number, PyValue>
  | PyGlobal;

/** A whitelisted callable found by GLOBAL/STACK_GLOBAL. */
class PyGlobal {
  constructor(readonly name: string) {}
}

const GLOBALS = new Set([
  "numpy.core.multiarray._reconstruct",
  "numpy._core.multiarray._reconstruct",
  "numpy.core.multiarray.scalar",
  "numpy._core.multiarray.scalar",
  "numpy.core.numeric._frombuffer",
  "numpy._core.numeric._frombuffer",
  "numpy.ndarray",
  "numpy.dtype",
  "_codecs.encode",
  "__builtin__.bytearray",
  "builtins.bytearray",
]);

const MARK = Symbol("mark");
type StackItem = PyValue | typeof MARK;

export function pyText(v: PyValue | undefined): string | undefined {
  if (typeof v === "string") return v;
  if (v instanceof Latin1String) return v.toString();
  return undefined;
}

export function parsePickle(bytes: Uint8Array, file: string): PyValue {
  const fail: (msg: string, at: number) => never = (msg, at) => {
    throw new DataError(`not a readable pickle: ${msg} at byte ${at}`, file);
  };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const stack: StackItem[] = [];
  const memo = new Map<number, PyValue>();
  let pos = 0;

  const need = (n: number): number => {
    if (n < 0 || pos + n > bytes.length) fail(`truncated (needs ${n} more bytes)`, pos);
    const at = pos;
    pos += n;
    return at;
  };
  const u8 = () => bytes[need(1)];
  const u16 = () => view.getUint16(need(2), true);
  const i32 = () => view.getInt32(need(4), true);
  const u32 = () => view.getUint32(need(4), true);
  const u64 = () => {
    const at = need(8);
    const v = view.getBigUint64(at, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail("length too large", at);
    return Number(v);
  };
  const take = (n: number) => {
    const at = need(n);
    return bytes.subarray(at, at + n);
  };
  const line = (): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) fail("unterminated line", pos);
    const s = Buffer.from(bytes.buffer, bytes.byteOffset + pos, end - pos).toString("latin1");
    pos = end + 1;
    return s;
  };
  const utf8 = (b: Uint8Array) => new TextDecoder("utf-8", { fatal: false }).decode(b);
  const pop = (): PyValue => {
    const v = stack.pop();
    if (v === undefined || v === MARK) fail("stack underflow", pos);
    return v as PyValue;
  };
  const popMark = (): PyValue[] => {
    const at = stack.lastIndexOf(MARK);
    if (at < 0) fail("no MARK on the stack", pos);
    const items = stack.splice(at) as PyValue[];
    items.shift();
    return items;
  };
  const top = (): PyValue => {
    const v = stack[stack.length - 1];
    if (v === undefined || v === MARK) fail("stack underflow", pos);
    return v as PyValue;
  };
  const key = (k: PyValue): string | number => {
    if (typeof k === "number") return k;
    const s = pyText(k);
    if (s === undefined) return fail("unsupported dict key type", pos);
    return s;
  };
  const setItems = (dict: PyValue, items: PyValue[]) => {
    if (!(dict instanceof Map)) fail("SETITEM(S) on a non-dict", pos);
    for (let i = 0; i + 1 < items.length; i += 2)
      (dict as Map<string | number, PyValue>).set(key(items[i]), items[i + 1]);
  };
  const appendItems = (list: PyValue, items: PyValue[]) => {
    if (!Array.isArray(list)) fail("APPEND(S) on a non-list", pos);
    (list as PyValue[]).push(...items);
  };
  const pyInt = (text: string, at: number): number => {
    const t = text.trim().replace(/L$/, "");
    if (t === "00") return 0; // protocol 0 writes False as I00 and True as I01
    if (t === "01") return 1;
    const v = Number(t);
    if (!Number.isSafeInteger(v)) fail(`integer ${t} out of range`, at);
    return v;
  };
  const longBytes = (b: Uint8Array, at: number): number => {
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b.length > 0 && b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER))
      fail("integer out of range", at);
    return Number(v);
  };

  for (;;) {
    const at = pos;
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail("unsupported pickle protocol", at);
        break;
      case 0x95: // FRAME
        u64();
        break;
      case 0x2e: // STOP
        return pop();
      case 0x28: // MARK
        stack.push(MARK);
        break;
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x49: // INT (text)
        stack.push(pyInt(line(), at));
        break;
      case 0x4c: // LONG (text)
        stack.push(pyInt(line(), at));
        break;
      case 0x4a: // BININT
        stack.push(i32());
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: // LONG1
        stack.push(longBytes(take(u8()), at));
        break;
      case 0x8b: // LONG4
        stack.push(longBytes(take(i32()), at));
        break;
      case 0x46: // FLOAT (text)
        stack.push(Number(line()));
        break;
      case 0x47: // BINFLOAT (big-endian)
        stack.push(view.getFloat64(need(8), false));
        break;
      case 0x53: {
        // STRING: a quoted Python 2 repr
        const text = line().trim();
        const q = text[0];
        if ((q !== "'" && q !== '"') || text[text.length - 1] !== q) fail("malformed STRING", at);
        stack.push(new Latin1String(unescapeRepr(text.slice(1, -1))));
        break;
      }
      case 0x54: // BINSTRING
        stack.push(new Latin1String(take(i32())));
        break;
      case 0x55: // SHORT_BINSTRING
        stack.push(new Latin1String(take(u8())));
        break;
      case 0x56: // UNICODE (raw-unicode-escape)
        stack.push(
          line().replace(/\\u([0-9a-fA-F]{4})/g, (_, h: string) =>
            String.fromCharCode(Number.parseInt(h, 16)),
          ),
        );
        break;
      case 0x58: // BINUNICODE
        stack.push(utf8(take(u32())));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(utf8(take(u8())));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(utf8(take(u64())));
        break;
      case 0x42: // BINBYTES
        stack.push(take(u32()));
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(take(u8()));
        break;
      case 0x8e: // BINBYTES8
        stack.push(take(u64()));
        break;
      case 0x96: // BYTEARRAY8
        stack.push(take(u64()));
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push([]);
        break;
      case 0x74: // TUPLE
        stack.push(popMark());
        break;
      case 0x85: // TUPLE1
        stack.push([pop()]);
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        stack.push([pop(), b]);
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        stack.push([pop(), b, c]);
        break;
      }
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x6c: // LIST
        stack.push(popMark());
        break;
      case 0x61: {
        // APPEND
        const v = pop();
        appendItems(top(), [v]);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        appendItems(top(), items);
        break;
      }
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x64: {
        // DICT
        const items = popMark();
        const d = new Map<string | number, PyValue>();
        setItems(d, items);
        stack.push(d);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x63: {
        // GLOBAL
        const mod = line();
        const name = line();
        stack.push(makeGlobal(`${mod}.${name}`, at));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pyText(pop());
        const mod = pyText(pop());
        if (name === undefined || mod === undefined) fail("STACK_GLOBAL needs two strings", at);
        stack.push(makeGlobal(`${mod}.${name}`, at));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const fn = pop();
        if (!(fn instanceof PyGlobal) || !Array.isArray(args)) fail("REDUCE of a non-callable", at);
        stack.push(call((fn as PyGlobal).name, args as PyValue[], at));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        build(top(), state, at);
        break;
      }
      case 0x70: // PUT
        memo.set(pyInt(line(), at), top());
        break;
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x67: // GET
        stack.push(fromMemo(pyInt(line(), at), at));
        break;
      case 0x68: // BINGET
        stack.push(fromMemo(u8(), at));
        break;
      case 0x6a: // LONG_BINGET
        stack.push(fromMemo(u32(), at));
        break;
      default:
        fail(`unsupported opcode 0x${op.toString(16).padStart(2, "0")}`, at);
    }
  }

  function fromMemo(i: number, at: number): PyValue {
    const v = memo.get(i);
    if (v === undefined) fail(`memo entry ${i} missing`, at);
    return v as PyValue;
  }

  function makeGlobal(name: string, at: number): PyGlobal {
    if (!GLOBALS.has(name)) fail(`refusing global ${name} (only numpy arrays and plain data are read)`, at);
    return new PyGlobal(name);
  }

  function call(name: string, args: PyValue[], at: number): PyValue {
    const short = name.slice(name.lastIndexOf(".") + 1);
    switch (short) {
      case "_reconstruct":
        return new NumpyArray();
      case "dtype": {
        const descr = pyText(args[0]);
        if (descr === undefined) fail("numpy.dtype without a type string", at);
        return new NumpyDtype(descr as string);
      }
      case "encode": {
        // _codecs.encode(text, 'latin1'): how Python 3 pickles bytes at protocol < 3
        const text = pyText(args[0]);
        const enc = pyText(args[1])?.toLowerCase().replace(/[-_]/g, "");
        if (text === undefined || (enc !== "latin1" && enc !== "iso88591"))
          fail("unsupported _codecs.encode call", at);
        return new Uint8Array(Buffer.from(text as string, "latin1"));
      }
      case "bytearray": {
        if (args.length === 0) return new Uint8Array(0);
        const b = asBytes(args[0]);
        if (b !== undefined) return b;
        const text = pyText(args[0]);
        if (text !== undefined) return new Uint8Array(Buffer.from(text, "latin1"));
        return fail("unsupported bytearray argument", at);
      }
      case "_frombuffer": {
        const [buf, dtype, shape, order] = args;
        const arr = new NumpyArray();
        const data = asBytes(buf);
        if (data === undefined || !(dtype instanceof NumpyDtype) || !Array.isArray(shape)) {
          fail("malformed numpy _frombuffer call", at);
        }
        arr.data = data as Uint8Array;
        arr.dtype = dtype as NumpyDtype;
        arr.shape = (shape as PyValue[]).map(Number);
        arr.fortran = pyText(order) === "F";
        return arr;
      }
      case "scalar": {
        const [dtype, raw] = args;
        const data = asBytes(raw);
        if (!(dtype instanceof NumpyDtype) || data === undefined) fail("malformed numpy scalar", at);
        const a = new NumpyArray();
        a.dtype = dtype as NumpyDtype;
        a.shape = [];
        a.data = data as Uint8Array;
        const values = numpyIntegers(a, file);
        return values[0];
      }
      default:
        return fail(`refusing to call ${name}`, at);
    }
  }

  function build(obj: PyValue, state: PyValue, at: number): void {
    if (obj instanceof NumpyDtype) {
      const order = Array.isArray(state) ? pyText(state[1]) : undefined;
      if (order !== undefined) obj.byteOrder = order;
      return;
    }
    if (obj instanceof NumpyArray) {
      if (!Array.isArray(state) || (state.length !== 5 && state.length !== 4))
        fail("malformed numpy array state", at);
      const s = state as PyValue[];
      const [shape, dtype, fortran, raw] = s.length === 5 ? s.slice(1) : s;
      const data = asBytes(raw);
      if (!Array.isArray(shape) || !(dtype instanceof NumpyDtype) || data === undefined) {
        fail("numpy array state is not (shape, dtype, fortran, bytes) (object arrays are not supported)", at);
      }
      obj.shape = (shape as PyValue[]).map(Number);
      obj.dtype = dtype as NumpyDtype;
      obj.fortran = fortran === true || fortran === 1;
      obj.data = data as Uint8Array;
      return;
    }
    fail("BUILD on an unsupported object", at);
  }
}

function asBytes(v: PyValue | undefined): Uint8Array | undefined {
  if (v instanceof Uint8Array) return v;
  if (v instanceof Latin1String) return v.bytes;
  // encoding='latin1' in Python decodes a Python 2 str to text; numpy encodes it back the same way.
  if (typeof v === "string") return new Uint8Array(Buffer.from(v, "latin1"));
  return undefined;
}

function unescapeRepr(s: string): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (s[i] !== "\\") {
      out.push(c & 0xff);
      continue;
    }
    const n = s[++i];
    const simple: Record<string, number> = {
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

/** The integer values of a numpy array of a (u)int dtype, in C order. */
export function numpyIntegers(a: NumpyArray, file: string): number[] {
  const m = /^([<>|=]?)([iu])([1248])$/.exec(a.dtype.descr);
  if (!m) throw new DataError(`numpy dtype ${a.dtype.descr} is not an integer type`, file);
  const size = Number(m[3]);
  const count = a.shape.reduce((p, d) => p * d, 1);
  if (a.data.byteLength !== count * size) {
    throw new DataError(
      `numpy array holds ${a.data.byteLength} bytes, shape ${a.shape} needs ${count * size}`,
      file,
    );
  }
  const little = (m[1] || a.dtype.byteOrder) !== ">";
  const view = new DataView(a.data.buffer, a.data.byteOffset, a.data.byteLength);
  const out = new Array<number>(count);
  for (let i = 0; i < count; i++) {
    const at = i * size;
    if (size === 1) out[i] = m[2] === "u" ? view.getUint8(at) : view.getInt8(at);
    else if (size === 2) out[i] = m[2] === "u" ? view.getUint16(at, little) : view.getInt16(at, little);
    else if (size === 4) out[i] = m[2] === "u" ? view.getUint32(at, little) : view.getInt32(at, little);
    else out[i] = Number(m[2] === "u" ? view.getBigUint64(at, little) : view.getBigInt64(at, little));
  }
  return out;
}
