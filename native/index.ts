/**
 * Loads the optional native addon (`npm run build:native`: OpenBLAS GEMM and LAPACK). Absent, it is not
 * an error: callers fall back to wasm/cpu kernels and the TypeScript linear algebra, and `nativeStatus()`
 * says why. INFLORA_NATIVE=0 turns it off (to measure or test the fallback); INFLORA_NATIVE_PATH points at
 * another build.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { packageFile } from "../common/package_files.js";

/** Row-major GEMM, tfjs BatchMatMul semantics: c[i] = op(a[i % batchA]) · op(b[i % batchB]). */
type Gemm<T> = (
  a: T,
  b: T,
  c: T,
  batchA: number,
  batchB: number,
  m: number,
  n: number,
  k: number,
  transA: boolean,
  transB: boolean,
) => void;

export interface NativeAddon {
  readonly sgemm: Gemm<Float32Array>;
  readonly dgemm: Gemm<Float64Array>;
  /** Float32 operations (2·m·n·k per product) sgemm has done in this process so far. */
  sgemmFlops(): number;
  /** c (n×n, both triangles) = a aᵀ for a row-major n×k. */
  dsyrk(a: Float64Array, c: Float64Array, n: number, k: number): void;
  /** All eigenpairs by divide and conquer; values descending, vectors row-major n×n (column j ↔ values[j]). */
  dsyevd(a: Float64Array, n: number): { values: Float64Array; vectors: Float64Array };
  /** The `count` largest eigenpairs (MRRR); values descending, vectors row-major n×count. */
  dsyevr(
    a: Float64Array,
    n: number,
    count: number,
    wantVectors: boolean,
  ): { values: Float64Array; vectors?: Float64Array };
  /**
   * All eigenvalues (ascending), then the eigenvectors of the index ranges `select` returns as a flat
   * [lo0, hi0, lo1, hi1, …] (half-open, ascending indices); vectors column-major n×m in range order.
   */
  eighSelect(
    a: Float64Array,
    n: number,
    select: (valuesAscending: Float64Array) => number[],
  ): { values: Float64Array; vectors: Float64Array };
  /** Orthonormal basis of the complement of span(basis) (row-major d×k), column-major d×(d−k). */
  complementBasis(basis: Float64Array, d: number, k: number): Float64Array;
  /** Float32 elementwise ops (tfjs semantics; see native/src/elementwise.cc). */
  binary(
    op: "add" | "sub" | "mul" | "div" | "sqdiff",
    a: Float32Array,
    aShape: readonly number[],
    b: Float32Array,
    bShape: readonly number[],
    out: Float32Array,
    outShape: readonly number[],
  ): void;
  addN(inputs: readonly Float32Array[], out: Float32Array): void;
  /** out[i] = Σ over parts in order of parts[p][i], each widened to float64: the in-order reduction. */
  sumF64(parts: readonly Float32Array[], out: Float64Array): void;
  unary(
    op: "neg" | "exp" | "square" | "sqrt" | "rsqrt" | "reciprocal" | "abs" | "erf",
    x: Float32Array,
    out: Float32Array,
  ): void;
  softmax(x: Float32Array, out: Float32Array, rows: number, cols: number): void;
  /** The model's fused ops (contracts: worker/model/fused_kernels.ts), rows of `cols` elements. */
  layerNorm(
    x: Float32Array,
    gamma: Float32Array,
    beta: Float32Array,
    out: Float32Array,
    rows: number,
    cols: number,
    eps: number,
  ): void;
  layerNormGrad(
    dy: Float32Array,
    x: Float32Array,
    gamma: Float32Array,
    out: Float32Array,
    rows: number,
    cols: number,
    eps: number,
  ): void;
  gelu(x: Float32Array, out: Float32Array): void;
  geluGrad(dy: Float32Array, x: Float32Array, out: Float32Array): void;
  softmaxGrad(dp: Float32Array, p: Float32Array, out: Float32Array, rows: number, cols: number): void;
  transpose(x: Float32Array, shape: readonly number[], perm: readonly number[], out: Float32Array): void;
  /** x viewed as [outer, reduce, inner], reduced over the middle axis into out [outer, inner]. */
  reduce(
    op: "sum" | "mean" | "max" | "min",
    x: Float32Array,
    outer: number,
    reduce: number,
    inner: number,
    out: Float32Array,
  ): void;
  /** `kernels`: the elementwise variant in use; `kernelReason`: why (CPUID, or INFLORA_KERNELS=name). */
  blasInfo(): { config: string; core: string; threads: number; kernels: string; kernelReason: string };
  /** BLAS threads; the elementwise, softmax, transpose and reduction kernels split over as many. */
  setThreads(threads: number): void;
  /** Every elementwise variant built (baseline, avx2, avx512), fastest last, and whether this CPU runs it. */
  kernelVariants(): { name: string; supported: boolean; missing: string }[];
  /** Switches the elementwise variant process-wide (tests compare them); false when unknown or unsupported. */
  useKernels(name: string): boolean;
}

export interface NativeStatus {
  readonly addon?: NativeAddon;
  /** Why there is no addon. */
  readonly reason?: string;
  /** describeNative() at load time, when loaded. */
  readonly description?: string;
  readonly path: string;
}

export const BUILD_HINT = "run npm run build:native (needs apt-get install libopenblas-dev liblapacke-dev)";

const DEFAULT_PATH = packageFile("native", "build", "Release", "inflora_native.node");

let status: NativeStatus | undefined;

function load(): NativeStatus {
  const path = process.env.INFLORA_NATIVE_PATH || DEFAULT_PATH;
  const flag = process.env.INFLORA_NATIVE?.toLowerCase();
  if (flag === "0" || flag === "off" || flag === "false") {
    return { path, reason: `native addon disabled by INFLORA_NATIVE=${process.env.INFLORA_NATIVE}` };
  }
  if (!existsSync(path)) return { path, reason: `native addon not built (${BUILD_HINT})` };
  // OpenBLAS's helper threads spin for 2^28 cycles after each threaded GEMM before they sleep (read once,
  // when the library loads). Our kernels between GEMMs run on the same cores (native/src/thread_pool.h), so
  // a spinning helper halves them; 2^4 cycles puts it to sleep at once. A value the user set is kept.
  process.env.OPENBLAS_THREAD_TIMEOUT ??= "4";
  try {
    const addon = createRequire(import.meta.url)(path) as NativeAddon;
    return { path, addon, description: describeNative(addon) };
  } catch (err) {
    const text = err instanceof Error ? err.message : String(err);
    return { path, reason: `native addon failed to load (${text.split("\n")[0]}); ${BUILD_HINT}` };
  }
}

/**
 * "OpenBLAS 0.3.21 Cooperlake, 1 thread, avx512 kernels (the fastest the CPU supports)": the library, its
 * kernel, threads now, our elementwise variant and why it was chosen.
 */
export function describeNative(addon: NativeAddon): string {
  const info = addon.blasInfo();
  const words = info.config.split(" ");
  const threads = `${info.threads} thread${info.threads === 1 ? "" : "s"}`;
  return `${words.slice(0, 2).join(" ")} ${info.core}, ${threads}, ${info.kernels} kernels (${info.kernelReason})`;
}

/** The addon's load outcome, decided once per process (and per worker thread). */
export function nativeStatus(): NativeStatus {
  status ??= load();
  return status;
}

export function nativeAddon(): NativeAddon | undefined {
  return nativeStatus().addon;
}

/** The addon, or an error that says how to build it: for tests and benchmarks that need it. */
export function requireNative(): NativeAddon {
  const s = nativeStatus();
  if (!s.addon) throw new Error(s.reason ?? BUILD_HINT);
  return s.addon;
}
