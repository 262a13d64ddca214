/**
 * PyTorch checkpoints as `torch.save` writes them (the zip format, PyTorch ≥ 1.6): `<dir>/data.pkl`, a
 * pickle (protocol 2) whose tensors name their storages by persistent id, and `<dir>/data/<key>`, each
 * storage's raw little-endian values. The pickle goes through the restricted reader of pickle.ts: it
 * builds tensors and plain containers, and refuses every other global, naming it.
 */
import {
  type Fail,
  PLAIN_GLOBALS,
  PyGlobal,
  type PyGlobalHandler,
  PyObject,
  type PyValue,
  parsePickle,
  pyText,
} from "./pickle.js";
import { decodeValues, dtypeSize, type StDtype, type TypedData } from "./safetensors.js";
import { gatherStrided } from "./strided.js";
import type { ZipArchive } from "./zip.js";

export class PthError extends Error {
  override readonly name = "PthError";
}

/** The storage classes a persistent id names, and the dtype of their values. */
const STORAGE_DTYPES: Readonly<Record<string, StDtype>> = {
  "torch.FloatStorage": "F32",
  "torch.DoubleStorage": "F64",
  "torch.HalfStorage": "F16",
  "torch.BFloat16Storage": "BF16",
  "torch.LongStorage": "I64",
  "torch.IntStorage": "I32",
  "torch.ShortStorage": "I16",
  "torch.CharStorage": "I8",
  "torch.ByteStorage": "U8",
  "torch.BoolStorage": "BOOL",
};

/** One `data/<key>` entry, decoded on first use (F16/BF16 widened to float32). */
export class TorchStorage extends PyObject {
  private decoded: TypedData | undefined;
  constructor(
    readonly dtype: StDtype,
    readonly numel: number,
    private readonly entry: string,
    private readonly zip: ZipArchive,
  ) {
    super();
  }

  values(): TypedData {
    if (this.decoded === undefined) {
      const where = `${this.zip.path}: entry "${this.entry}"`;
      if (!this.zip.names.includes(this.entry))
        throw new PthError(`${where}: storage missing from the archive`);
      const bytes = this.zip.read(this.entry);
      const want = this.numel * dtypeSize(this.dtype);
      if (bytes.length !== want) {
        throw new PthError(
          `${where}: ${bytes.length} bytes, the pickle says ${this.numel} × ${this.dtype} = ${want}`,
        );
      }
      this.decoded = decodeValues(bytes, this.dtype);
    }
    return this.decoded;
  }
}

/** A tensor: a strided window on a storage (torch._utils._rebuild_tensor_v2). */
export class TorchTensor extends PyObject {
  constructor(
    readonly storage: TorchStorage,
    readonly offset: number,
    readonly shape: readonly number[],
    readonly stride: readonly number[],
  ) {
    super();
  }

  get dtype(): StDtype {
    return this.storage.dtype;
  }

  /** The values in C order: a view of the storage when the tensor is contiguous in it, else a gathered copy. */
  values(): TypedData {
    const src = this.storage.values();
    const n = this.shape.reduce((a, b) => a * b, 1);
    let contiguous = true;
    for (let k = this.shape.length - 1, s = 1; k >= 0; s *= this.shape[k], k--) {
      if (this.shape[k] !== 1 && this.stride[k] !== s) contiguous = false;
    }
    if (contiguous)
      return this.offset === 0 && n === src.length ? src : src.subarray(this.offset, this.offset + n);
    return gatherStrided(src, this.shape, this.stride, this.offset);
  }
}

/** An instance of a global the user allowed: its name and what the pickle gave it, never run. */
export class InertObject extends PyObject {
  state: PyValue = null;
  constructor(
    readonly cls: string,
    readonly args: PyValue[],
  ) {
    super();
  }
  override setState(state: PyValue): void {
    this.state = state;
  }
}

export interface PthOptions {
  /** Globals to build as inert data (e.g. DINO's `argparse.Namespace` args) instead of refusing them. */
  readonly allowGlobals?: readonly string[];
}

/** The checkpoint's pickled object with tensors as TorchTensor; `pickle` is the entry it came from. */
export function readPthArchive(zip: ZipArchive, opts: PthOptions = {}): { root: PyValue; pickle: string } {
  const pickles = zip.names.filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pickles.length !== 1) {
    throw new PthError(
      `${zip.path}: not a torch.save archive: expected one <dir>/data.pkl entry, found ${pickles.length}`,
    );
  }
  const pickle = pickles[0];
  const dir = pickle.slice(0, -"data.pkl".length);
  if (zip.names.includes(`${dir}byteorder`)) {
    const order = new TextDecoder().decode(zip.read(`${dir}byteorder`)).trim();
    if (order !== "little")
      throw new PthError(`${zip.path}: byteorder "${order}" (only little-endian is read)`);
  }
  const storages = new Map<string, TorchStorage>();
  const persistentLoad = (pid: PyValue, fail: Fail): PyValue => {
    if (!Array.isArray(pid) || pid.length !== 5 || pyText(pid[0]) !== "storage") {
      return fail("persistent id is not ('storage', type, key, location, numel)");
    }
    const [, type, key, , numel] = pid;
    const dtype = type instanceof PyGlobal ? STORAGE_DTYPES[type.name] : undefined;
    const name = pyText(key);
    if (dtype === undefined) return fail("persistent id without a known storage type");
    if (name === undefined || typeof numel !== "number" || !Number.isSafeInteger(numel) || numel < 0) {
      return fail("persistent id with a malformed key or size");
    }
    let s = storages.get(name);
    if (s === undefined) {
      s = new TorchStorage(dtype, numel, `${dir}data/${name}`, zip);
      storages.set(name, s);
    } else if (s.dtype !== dtype || s.numel !== numel) {
      return fail(`storage ${name} named twice with different types or sizes`);
    }
    return s;
  };
  const allowed = opts.allowGlobals ?? [];
  const inert = (cls: string): PyGlobalHandler => ({
    call: (args) => new InertObject(cls, args),
    create: (args) => new InertObject(cls, args),
  });
  const globals = new Map<string, PyGlobalHandler>([
    ...PLAIN_GLOBALS,
    ...allowed.map((g) => [g, inert(g)] as const),
    ...Object.keys(STORAGE_DTYPES).map((g) => [g, {}] as const),
    ["torch._utils._rebuild_tensor_v2", { call: rebuildTensor }],
    ["torch._utils._rebuild_parameter", { call: rebuildParameter }],
  ]);
  const root = parsePickle(zip.read(pickle), `${zip.path}: ${pickle}`, {
    globals,
    persistentLoad,
    refusalHint: (g) =>
      `a .pth is read as tensors and plain containers only; --allow-global ${g} reads it as inert data`,
  });
  return { root, pickle };
}

const isIndex = (v: PyValue) => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

/** `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])`. */
function rebuildTensor(args: PyValue[], fail: Fail): PyValue {
  const [storage, offset, size, stride, , hooks] = args;
  if (
    !(storage instanceof TorchStorage) ||
    !isIndex(offset) ||
    !Array.isArray(size) ||
    !Array.isArray(stride) ||
    size.length !== stride.length ||
    !size.every(isIndex) ||
    !stride.every(isIndex)
  ) {
    return fail("_rebuild_tensor_v2 without (storage, offset, size, stride)");
  }
  if (hooks instanceof Map && hooks.size > 0) return fail("tensor with backward hooks");
  const shape = size as number[];
  const strides = stride as number[];
  const last = shape.some((d) => d === 0)
    ? -1
    : (offset as number) + shape.reduce((a, d, k) => a + (d - 1) * strides[k], 0);
  if (last >= storage.numel) {
    return fail(
      `tensor [${shape}] at offset ${offset} reaches element ${last} of a storage of ${storage.numel}`,
    );
  }
  return new TorchTensor(storage, offset as number, shape, strides);
}

/** `_rebuild_parameter(data, requires_grad, backward_hooks)`: an nn.Parameter is its tensor here. */
function rebuildParameter(args: PyValue[], fail: Fail): PyValue {
  if (!(args[0] instanceof TorchTensor)) return fail("_rebuild_parameter without a tensor");
  return args[0];
}
