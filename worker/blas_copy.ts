/**
 * Data-movement kernels of the blas backend (Slice, PadV2, Concat) as block copies: the cpu backend moves
 * these element by element through index arithmetic (4–8 ms for a ViT class-token slice or its gradient
 * pad); runs of contiguous elements copy at memory speed with TypedArray.set.
 */
import * as tf from "@tensorflow/tfjs-core";
import { input, size, values, withFallback } from "./blas_kernel_util.js";

function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let c = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = c;
    c *= shape[i];
  }
  return s;
}

/**
 * Copies the box of extent `box` at `srcAt` in src (shape srcShape) to `dstAt` in dst (shape dstShape),
 * both row-major. Trailing dims the box spans in full on both sides merge into one contiguous run.
 */
export function copyBox(
  src: Float32Array,
  srcShape: readonly number[],
  srcAt: readonly number[],
  dst: Float32Array,
  dstShape: readonly number[],
  dstAt: readonly number[],
  box: readonly number[],
): void {
  const r = box.length;
  if (size(box) === 0) return;
  if (r === 0) {
    dst[0] = src[0];
    return;
  }
  // First dim of the contiguous run: every later dim is covered in full on both sides.
  let k = r - 1;
  while (k > 0 && box[k] === srcShape[k] && box[k] === dstShape[k]) k--;
  const ss = strides(srcShape);
  const ds = strides(dstShape);
  const run = box[k] * ss[k];
  let so = 0;
  let doff = 0;
  for (let i = 0; i < r; i++) {
    so += srcAt[i] * ss[i];
    doff += dstAt[i] * ds[i];
  }
  const idx = new Array<number>(k).fill(0);
  let outer = 1;
  for (let i = 0; i < k; i++) outer *= box[i];
  for (let t = 0; t < outer; t++) {
    if (run < 16) for (let j = 0; j < run; j++) dst[doff + j] = src[so + j];
    else dst.set(src.subarray(so, so + run), doff);
    for (let d = k - 1; d >= 0; d--) {
      idx[d]++;
      so += ss[d];
      doff += ds[d];
      if (idx[d] < box[d]) break;
      so -= ss[d] * box[d];
      doff -= ds[d] * box[d];
      idx[d] = 0;
    }
  }
}

export function blasCopyKernels(): tf.KernelConfig[] {
  const slice = withFallback(tf.Slice, (args, backend) => {
    const x = input(args, "x");
    const attrs = args.attrs as unknown as tf.SliceAttrs;
    if (x.dtype !== "float32") return undefined;
    const [begin, extent] = tf.slice_util.parseSliceParams(x, attrs.begin, attrs.size);
    tf.slice_util.assertParamsValid(x, begin, extent);
    const out = backend.output(size(extent));
    copyBox(values(backend, x), x.shape, begin, out, extent, new Array(extent.length).fill(0), extent);
    return backend.makeTensorInfo(extent, "float32", out);
  });

  const pad = withFallback(tf.PadV2, (args, backend) => {
    const x = input(args, "x");
    const { paddings, constantValue } = args.attrs as unknown as tf.PadV2Attrs;
    if (x.dtype !== "float32" || paddings.length !== x.shape.length) return undefined;
    const shape = x.shape.map((d, i) => paddings[i][0] + d + paddings[i][1]);
    const out = backend.output(size(shape));
    out.fill(constantValue);
    copyBox(
      values(backend, x),
      x.shape,
      new Array(x.shape.length).fill(0),
      out,
      shape,
      paddings.map((p) => p[0]),
      x.shape,
    );
    return backend.makeTensorInfo(shape, "float32", out);
  });

  const concat = withFallback(tf.Concat, (args, backend) => {
    const inputs = args.inputs as unknown as tf.TensorInfo[];
    const { axis } = args.attrs as unknown as tf.ConcatAttrs;
    if (inputs.length === 0 || inputs.some((t) => t.dtype !== "float32")) return undefined;
    const $axis = tf.util.parseAxisParam(axis, inputs[0].shape)[0];
    const parts = inputs.filter((t) => size(t.shape) > 0);
    if (parts.length === 0) return undefined;
    tf.backend_util.assertParamsConsistent(
      parts.map((t) => t.shape),
      $axis,
    );
    const shape = tf.backend_util.computeOutShape(
      parts.map((t) => t.shape),
      $axis,
    );
    const out = backend.output(size(shape));
    const at = new Array<number>(shape.length).fill(0);
    const zeros = new Array<number>(shape.length).fill(0);
    for (const t of parts) {
      copyBox(values(backend, t), t.shape, zeros, out, shape, at, t.shape);
      at[$axis] += t.shape[$axis];
    }
    return backend.makeTensorInfo(shape, "float32", out);
  });

  return [slice, pad, concat];
}
