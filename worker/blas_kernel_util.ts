/** Helpers shared by the blas backend's kernel files. */
import * as tf from "@tensorflow/tfjs-core";
import type { BlasBackend } from "./blas_backend.js";

export type KernelArgs = Parameters<tf.KernelFunc>[0];

export function cpuKernel(name: string): tf.KernelFunc {
  const k = tf.getKernel(name, "cpu");
  if (!k) throw new Error(`blas backend: the cpu backend has no ${name} kernel`);
  return k.kernelFunc;
}

/**
 * A blas kernel that runs `fast`, or the cpu backend's kernel when `fast` declines (returns undefined) —
 * for dtypes and cases the native code does not cover.
 */
export function withFallback(
  name: string,
  fast: (args: KernelArgs, backend: BlasBackend) => tf.TensorInfo | undefined,
): tf.KernelConfig {
  const cpu = cpuKernel(name);
  return {
    kernelName: name,
    backendName: "blas",
    kernelFunc: (args) => fast(args, args.backend as BlasBackend) ?? (cpu(args) as tf.TensorInfo),
  };
}

/** A named input; tfjs validated the op's inputs before the kernel runs, so absence is a bug. */
export function input(args: KernelArgs, name: string): tf.TensorInfo {
  const t = (args.inputs as Record<string, tf.TensorInfo | undefined>)[name];
  if (!t) throw new Error(`blas backend: missing kernel input ${name}`);
  return t;
}

export function values(backend: BlasBackend, t: tf.TensorInfo): Float32Array {
  return backend.data.get(t.dataId).values as Float32Array;
}

export function size(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}
