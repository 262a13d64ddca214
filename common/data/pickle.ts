import {
  asBytes,
  type Fail,
  Latin1String,
  PickleError,
  PLAIN_GLOBALS,
  type PyGlobalHandler,
  PyObject,
  type PyValue,
  parsePickle as parseRestricted,
  pyText,
} from "../pickle.js";
import { DataError } from "./errors.js";

/**
 * The pickles datasets ship in (torchvision's CIFAR files): plain data and numpy arrays, read by the
 * restricted reader of common/pickle.ts with the numpy globals below allowed and every other one refused.
 */

export { Latin1String, type PyValue, pyText };

export class NumpyDtype extends PyObject {
  byteOrder = "|";
  constructor(readonly descr: string) {
    super();
  }
  override setState(state: PyValue): void {
    const order = Array.isArray(state) ? pyText(state[1]) : undefined;
    if (order !== undefined) this.byteOrder = order;
  }
}

/** A numpy array: raw bytes in C (or Fortran) order. */
export class NumpyArray extends PyObject {
  shape: number[] = [0];
  dtype: NumpyDtype = new NumpyDtype("u1");
  fortran = false;
  data: Uint8Array = new Uint8Array(0);

  /** ndarray.__setstate__: (version,) shape, dtype, is_fortran, raw bytes. */
  override setState(state: PyValue, fail: Fail): void {
    if (!Array.isArray(state) || (state.length !== 5 && state.length !== 4))
      fail("malformed numpy array state");
    const s = state as PyValue[];
    const [shape, dtype, fortran, raw] = s.length === 5 ? s.slice(1) : s;
    const data = asBytes(raw);
    if (!Array.isArray(shape) || !(dtype instanceof NumpyDtype) || data === undefined) {
      fail("numpy array state is not (shape, dtype, fortran, bytes) (object arrays are not supported)");
    }
    this.shape = (shape as PyValue[]).map(Number);
    this.dtype = dtype as NumpyDtype;
    this.fortran = fortran === true || fortran === 1;
    this.data = data as Uint8Array;
  }
}

const reconstruct: PyGlobalHandler = { call: () => new NumpyArray() };

const dtype: PyGlobalHandler = {
  call: (args, fail) => {
    const descr = pyText(args[0]);
    if (descr === undefined) fail("numpy.dtype without a type string");
    return new NumpyDtype(descr as string);
  },
};

/** numpy ≥ 1.x at protocol 5: `_frombuffer(buffer, dtype, shape, order)`. */
const frombuffer: PyGlobalHandler = {
  call: ([buf, dt, shape, order], fail) => {
    const data = asBytes(buf);
    if (data === undefined || !(dt instanceof NumpyDtype) || !Array.isArray(shape)) {
      fail("malformed numpy _frombuffer call");
    }
    const arr = new NumpyArray();
    arr.data = data as Uint8Array;
    arr.dtype = dt as NumpyDtype;
    arr.shape = (shape as PyValue[]).map(Number);
    arr.fortran = pyText(order) === "F";
    return arr;
  },
};

/** A numpy integer scalar: `scalar(dtype, raw bytes)`. */
const scalar: PyGlobalHandler = {
  call: ([dt, raw], fail) => {
    const data = asBytes(raw);
    if (!(dt instanceof NumpyDtype) || data === undefined) fail("malformed numpy scalar");
    const a = new NumpyArray();
    a.dtype = dt as NumpyDtype;
    a.shape = [];
    a.data = data as Uint8Array;
    try {
      return numpyIntegers(a, "")[0];
    } catch (err) {
      return fail((err as DataError).detail);
    }
  },
};

/** numpy 1 names its core `numpy.core`, numpy 2 `numpy._core`; both write pickles the other reads. */
const NUMPY_GLOBALS: ReadonlyMap<string, PyGlobalHandler> = new Map([
  ...PLAIN_GLOBALS,
  ...["numpy.core", "numpy._core"].flatMap((core) => [
    [`${core}.multiarray._reconstruct`, reconstruct] as const,
    [`${core}.multiarray.scalar`, scalar] as const,
    [`${core}.numeric._frombuffer`, frombuffer] as const,
  ]),
  ["numpy.ndarray", {}],
  ["numpy.dtype", dtype],
]);

/** A dataset pickle; errors are DataErrors naming `file`. */
export function parsePickle(bytes: Uint8Array, file: string): PyValue {
  try {
    return parseRestricted(bytes, file, {
      globals: NUMPY_GLOBALS,
      refusalHint: () => "only numpy arrays and plain data are read",
    });
  } catch (err) {
    if (err instanceof PickleError) throw new DataError(err.detail, file);
    throw err;
  }
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
