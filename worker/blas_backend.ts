/**
 * The "blas" tfjs backend: tfjs's pure-JS cpu backend (same tensor storage, same kernels) with the
 * matrix products (MatMul/BatchMatMul/_FusedMatMul) and the other hot kernels replaced by the native
 * addon (OpenBLAS). Results equal the cpu backend's up to float32 rounding order.
 */
import { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";
import * as tf from "@tensorflow/tfjs-core";
import type { NativeAddon } from "../native/index.js";
import { blasCopyKernels } from "./blas_copy.js";
import { blasElementwiseKernels } from "./blas_elementwise.js";
import { blasFusedKernels } from "./blas_fused.js";
import { blasMatMulKernels } from "./blas_matmul.js";
import { BufferPool } from "./blas_pool.js";

export const BLAS_BACKEND = "blas";

/**
 * Idle recycled buffers are capped at this many MiB (INFLORA_BLAS_POOL_MB overrides). Below a step's live
 * set the excess is left to the garbage collector and the next step faults in fresh pages again, so the
 * cap is set above what a ViT-B/16 batch-8 training step keeps alive.
 */
const DEFAULT_POOL_MIB = 2048;

/**
 * BLAS threads for the backend's matmuls and the addon's other kernels (INFLORA_BLAS_THREADS overrides).
 * One: `--workers N` runs N worker processes on one machine, each also decoding images on other threads,
 * and N processes each with every core's worth of threads would oversubscribe it. A machine that runs a
 * single worker does better with one thread per core (bench/compare.ts measures 1 and 2).
 */
function blasThreads(): number {
  const n = Number(process.env.INFLORA_BLAS_THREADS ?? 1);
  return Number.isInteger(n) && n >= 1 ? n : 1;
}

/** The cpu backend's storage with recycled kernel outputs (see blas_pool.ts). */
export class BlasBackend extends MathBackendCPU {
  readonly pool = new BufferPool(poolBytes());

  /** A float32 output buffer of n elements whose contents the kernel overwrites. */
  output(n: number): Float32Array {
    return this.pool.take(n);
  }

  override write(values: tf.backend_util.BackendValues, shape: number[], dtype: tf.DataType): tf.DataId {
    const id = super.write(values, shape, dtype);
    this.pool.retain(values);
    return id;
  }

  override move(
    dataId: tf.DataId,
    values: tf.backend_util.BackendValues,
    shape: number[],
    dtype: tf.DataType,
    refCount: number,
  ): void {
    super.move(dataId, values, shape, dtype, refCount);
    this.pool.retain(values);
  }

  override disposeData(dataId: tf.DataId, force = false): boolean {
    const values = this.data.has(dataId) ? this.data.get(dataId).values : undefined;
    const deleted = super.disposeData(dataId, force);
    if (deleted && values !== undefined && !this.data.has(dataId)) this.pool.release(values);
    return deleted;
  }

  override readSync(dataId: tf.DataId): tf.backend_util.BackendValues {
    const values = super.readSync(dataId);
    this.pool.expose(this.data.get(dataId).values);
    return values;
  }

  override async read(dataId: tf.DataId): Promise<tf.backend_util.BackendValues> {
    return this.readSync(dataId);
  }

  override dispose(): void {
    this.pool.clear();
    super.dispose();
  }
}

function poolBytes(): number {
  const mib = Number(process.env.INFLORA_BLAS_POOL_MB ?? DEFAULT_POOL_MIB);
  return (Number.isFinite(mib) && mib >= 0 ? mib : DEFAULT_POOL_MIB) * 2 ** 20;
}

/**
 * Registers the backend (once per process) on top of the cpu backend's kernels, which must already be
 * registered (importing @tensorflow/tfjs-backend-cpu does that).
 */
export function registerBlasBackend(addon: NativeAddon): void {
  if (tf.findBackendFactory(BLAS_BACKEND)) return;
  const cpuKernels = tf.getKernelsForBackend("cpu");
  if (cpuKernels.length === 0) throw new Error("blas backend: the cpu backend's kernels are not registered");
  const own = [
    ...blasMatMulKernels(addon),
    ...blasElementwiseKernels(addon),
    ...blasFusedKernels(addon),
    ...blasCopyKernels(),
  ];
  const ownNames = new Set(own.map((k) => k.kernelName));
  for (const k of cpuKernels) {
    if (!ownNames.has(k.kernelName)) tf.registerKernel({ ...k, backendName: BLAS_BACKEND });
  }
  for (const k of own) tf.registerKernel(k);
  addon.setThreads(blasThreads());
  // Priority 0: never picked implicitly; selectBackend chooses it by name.
  tf.registerBackend(BLAS_BACKEND, () => new BlasBackend(), 0);
}
