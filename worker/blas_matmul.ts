/**
 * MatMul kernels of the blas backend: BatchMatMul and _FusedMatMul through OpenBLAS sgemm, in the cpu
 * backend's semantics (batch i multiplies a[i % batchA] by b[i % batchB]). Anything but float32 goes to
 * the cpu backend's own kernel.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { NativeAddon } from "../native/index.js";
import type { BlasBackend } from "./blas_backend.js";
import { cpuKernel, type KernelArgs } from "./blas_kernel_util.js";

interface MatMulAttrs {
  readonly transposeA: boolean;
  readonly transposeB: boolean;
}

function product(dims: readonly number[]): number {
  let p = 1;
  for (const d of dims) p *= d;
  return p;
}

/** a·b (with transposes) as a new float32 TensorInfo, or undefined when the cpu kernel must do it. */
function gemm(
  addon: NativeAddon,
  backend: BlasBackend,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  { transposeA, transposeB }: MatMulAttrs,
): tf.TensorInfo | undefined {
  if (a.dtype !== "float32" || b.dtype !== "float32") return undefined;
  const ra = a.shape.length;
  const rb = b.shape.length;
  if (ra < 2 || rb < 2) return undefined;
  const k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
  const kb = transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
  const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
  const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
  if (k !== kb) {
    throw new Error(
      `Error in matMul: inner shapes (${k}) and (${kb}) of Tensors with shapes ${a.shape} and ${b.shape} ` +
        `and transposeA=${transposeA} and transposeB=${transposeB} must match.`,
    );
  }
  const batchA = product(a.shape.slice(0, -2));
  const batchB = product(b.shape.slice(0, -2));
  if (batchA === 0 || batchB === 0) return undefined;
  const outer = tf.broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const av = backend.data.get(a.dataId).values as Float32Array;
  const bv = backend.data.get(b.dataId).values as Float32Array;
  const out = backend.output(Math.max(batchA, batchB) * m * n);
  addon.sgemm(av, bv, out, batchA, batchB, m, n, k, transposeA, transposeB);
  return backend.makeTensorInfo([...outer, m, n], "float32", out);
}

interface FusedInputs {
  readonly a: tf.TensorInfo;
  readonly b: tf.TensorInfo;
  readonly bias?: tf.TensorInfo;
  readonly preluActivationWeights?: tf.TensorInfo;
}

interface FusedAttrs extends MatMulAttrs {
  readonly activation?: string;
  readonly leakyreluAlpha?: number;
}

const ACTIVATION_KERNELS: Record<string, string> = {
  linear: tf.Identity,
  relu: tf.Relu,
  relu6: tf.Relu6,
  elu: tf.Elu,
  prelu: tf.Prelu,
  leakyrelu: tf.LeakyRelu,
  sigmoid: tf.Sigmoid,
};

export function blasMatMulKernels(addon: NativeAddon): tf.KernelConfig[] {
  const cpuBatchMatMul = cpuKernel(tf.BatchMatMul);
  const cpuFused = cpuKernel(tf._FusedMatMul);

  const batchMatMul = (args: KernelArgs): tf.TensorInfo => {
    const backend = args.backend as BlasBackend;
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const out = gemm(addon, backend, a, b, args.attrs as unknown as MatMulAttrs);
    return out ?? (cpuBatchMatMul(args) as tf.TensorInfo);
  };

  // matmul, then bias, then activation: the cpu kernel's order, so rounding matches it.
  const fusedMatMul = (args: KernelArgs): tf.TensorInfo => {
    const backend = args.backend as BlasBackend;
    const { a, b, bias, preluActivationWeights } = args.inputs as unknown as FusedInputs;
    const attrs = args.attrs as unknown as FusedAttrs;
    const first = gemm(addon, backend, a, b, attrs);
    if (!first) return cpuFused(args) as tf.TensorInfo;
    let current: tf.TensorInfo = first;
    const run = (name: string, inputs: tf.NamedTensorInfoMap, kAttrs?: tf.NamedAttrMap) => {
      const k = tf.getKernel(name, "blas");
      if (!k) throw new Error(`blas backend: no ${name} kernel`);
      const next = k.kernelFunc({ inputs, backend, attrs: kAttrs }) as tf.TensorInfo;
      backend.disposeIntermediateTensorInfo(current);
      current = next;
    };
    if (bias) run(tf.Add, { a: current, b: bias });
    if (attrs.activation) {
      const name = ACTIVATION_KERNELS[attrs.activation];
      if (!name)
        throw new Error(`Activation ${attrs.activation} has not been implemented for the blas backend.`);
      if (attrs.activation === "prelu") run(name, { x: current, alpha: preluActivationWeights! });
      else if (attrs.activation === "leakyrelu") run(name, { x: current }, { alpha: attrs.leakyreluAlpha! });
      else run(name, { x: current });
    }
    return current;
  };

  return [
    { kernelName: tf.BatchMatMul, backendName: "blas", kernelFunc: batchMatMul },
    { kernelName: tf._FusedMatMul, backendName: "blas", kernelFunc: fusedMatMul },
  ];
}
