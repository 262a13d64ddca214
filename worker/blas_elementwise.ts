/**
 * Elementwise, softmax, transpose and reduction kernels of the blas backend, in C++ (the cpu backend's JS
 * loops cost 10–300 ns per element; these run at memory speed). Float32 only: any other dtype, and any
 * case the native code does not cover, goes to the cpu backend's own kernel.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { NativeAddon } from "../native/index.js";
import { input, size, values, withFallback } from "./blas_kernel_util.js";

type BinaryOp = Parameters<NativeAddon["binary"]>[0];
type UnaryOp = Parameters<NativeAddon["unary"]>[0];
type ReduceOp = Parameters<NativeAddon["reduce"]>[0];

function binaryKernel(addon: NativeAddon, name: string, op: BinaryOp): tf.KernelConfig {
  return withFallback(name, (args, backend) => {
    const a = input(args, "a");
    const b = input(args, "b");
    if (a.dtype !== "float32" || b.dtype !== "float32") return undefined;
    const shape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
    const out = backend.output(size(shape));
    addon.binary(op, values(backend, a), a.shape, values(backend, b), b.shape, out, shape);
    return backend.makeTensorInfo(shape, "float32", out);
  });
}

function unaryKernel(addon: NativeAddon, name: string, op: UnaryOp): tf.KernelConfig {
  return withFallback(name, (args, backend) => {
    const x = input(args, "x");
    if (x.dtype !== "float32") return undefined;
    const out = backend.output(size(x.shape));
    addon.unary(op, values(backend, x), out);
    return backend.makeTensorInfo(x.shape, "float32", out);
  });
}

/** Reductions over one contiguous block of axes, seen as [outer, reduce, inner]. */
function reduceKernel(
  addon: NativeAddon,
  name: string,
  op: ReduceOp,
  axisAttr: "axis" | "reductionIndices",
): tf.KernelConfig {
  return withFallback(name, (args, backend) => {
    const x = input(args, "x");
    const attrs = args.attrs as unknown as Record<typeof axisAttr, number | number[]> & { keepDims: boolean };
    if (x.dtype !== "float32") return undefined;
    const axes = tf.util.parseAxisParam(attrs[axisAttr], x.shape).sort((p, q) => p - q);
    if (axes.length === 0) return undefined;
    for (let i = 1; i < axes.length; i++) if (axes[i] !== axes[i - 1] + 1) return undefined;
    const first = axes[0];
    const last = axes[axes.length - 1];
    const outer = size(x.shape.slice(0, first));
    const reduce = size(x.shape.slice(first, last + 1));
    const inner = size(x.shape.slice(last + 1));
    if (reduce === 0 && op !== "sum") return undefined;
    const [outShape] = tf.backend_util.computeOutAndReduceShapes(x.shape, axes);
    const out = backend.output(outer * inner);
    addon.reduce(op, values(backend, x), outer, reduce, inner, out);
    const shape = attrs.keepDims ? tf.backend_util.expandShapeToKeepDim(outShape, axes) : outShape;
    return backend.makeTensorInfo(shape, "float32", out);
  });
}

export function blasElementwiseKernels(addon: NativeAddon): tf.KernelConfig[] {
  const softmax = withFallback(tf.Softmax, (args, backend) => {
    const logits = input(args, "logits");
    const { dim } = args.attrs as unknown as tf.SoftmaxAttrs;
    const rank = logits.shape.length;
    if (logits.dtype !== "float32" || rank === 0 || (dim !== -1 && dim !== rank - 1)) return undefined;
    const cols = logits.shape[rank - 1];
    const out = backend.output(size(logits.shape));
    addon.softmax(values(backend, logits), out, cols === 0 ? 0 : out.length / cols, cols);
    return backend.makeTensorInfo(logits.shape, "float32", out);
  });

  const transpose = withFallback(tf.Transpose, (args, backend) => {
    const x = input(args, "x");
    const { perm } = args.attrs as unknown as tf.TransposeAttrs;
    if (x.dtype !== "float32") return undefined;
    const shape = perm.map((p) => x.shape[p]);
    const out = backend.output(size(x.shape));
    addon.transpose(values(backend, x), x.shape, perm, out);
    return backend.makeTensorInfo(shape, "float32", out);
  });

  const addN = withFallback(tf.AddN, (args, backend) => {
    const tensors = args.inputs as unknown as tf.TensorInfo[];
    if (tensors.length === 0 || tensors.some((t) => t.dtype !== "float32")) return undefined;
    const out = backend.output(size(tensors[0].shape));
    addon.addN(
      tensors.map((t) => values(backend, t)),
      out,
    );
    return backend.makeTensorInfo(tensors[0].shape, "float32", out);
  });

  return [
    binaryKernel(addon, tf.Add, "add"),
    binaryKernel(addon, tf.Sub, "sub"),
    binaryKernel(addon, tf.Multiply, "mul"),
    binaryKernel(addon, tf.RealDiv, "div"),
    binaryKernel(addon, tf.SquaredDifference, "sqdiff"),
    unaryKernel(addon, tf.Neg, "neg"),
    unaryKernel(addon, tf.Exp, "exp"),
    unaryKernel(addon, tf.Square, "square"),
    unaryKernel(addon, tf.Sqrt, "sqrt"),
    unaryKernel(addon, tf.Rsqrt, "rsqrt"),
    unaryKernel(addon, tf.Reciprocal, "reciprocal"),
    unaryKernel(addon, tf.Abs, "abs"),
    unaryKernel(addon, tf.Erf, "erf"),
    reduceKernel(addon, tf.Sum, "sum", "axis"),
    reduceKernel(addon, tf.Mean, "mean", "axis"),
    reduceKernel(addon, tf.Max, "max", "reductionIndices"),
    reduceKernel(addon, tf.Min, "min", "axis"),
    softmax,
    transpose,
    addN,
  ];
}
