/**
 * The model's fused kernels (worker/model/fused_kernels.ts) on the blas backend, through the addon: each
 * one pass over memory where the op chain makes five to a dozen. Registering them is what makes the model
 * take them (fused_kernels.ts asks the backend). Float32 only, as the model always is.
 */
import type * as tf from "@tensorflow/tfjs-core";
import type { NativeAddon } from "../native/index.js";
import type { BlasBackend } from "./blas_backend.js";
import { input, type KernelArgs, size, values } from "./blas_kernel_util.js";
import { FUSED_KERNELS } from "./model/fused_kernels.js";

function fused(
  name: string,
  run: (args: KernelArgs, backend: BlasBackend) => tf.TensorInfo,
  inputs: readonly string[],
): tf.KernelConfig {
  return {
    kernelName: name,
    backendName: "blas",
    kernelFunc: (args) => {
      for (const n of inputs) {
        const t = input(args, n);
        if (t.dtype !== "float32") throw new Error(`blas ${name}: ${n} is ${t.dtype}, expected float32`);
      }
      return run(args, args.backend as BlasBackend);
    },
  };
}

/** The last axis is the row; everything before it counts rows. */
function rowsCols(t: tf.TensorInfo): [number, number] {
  const cols = t.shape.length === 0 ? 1 : t.shape[t.shape.length - 1];
  return [cols === 0 ? 0 : size(t.shape) / cols, cols];
}

export function blasFusedKernels(addon: NativeAddon): tf.KernelConfig[] {
  const eps = (args: KernelArgs) => (args.attrs as { eps: number }).eps;
  return [
    fused(
      FUSED_KERNELS.layerNorm,
      (args, backend) => {
        const x = input(args, "x");
        const [rows, cols] = rowsCols(x);
        const out = backend.output(size(x.shape));
        const v = (n: string) => values(backend, input(args, n));
        addon.layerNorm(v("x"), v("gamma"), v("beta"), out, rows, cols, eps(args));
        return backend.makeTensorInfo(x.shape, "float32", out);
      },
      ["x", "gamma", "beta"],
    ),
    fused(
      FUSED_KERNELS.layerNormGrad,
      (args, backend) => {
        const x = input(args, "x");
        const [rows, cols] = rowsCols(x);
        const out = backend.output(size(x.shape));
        const v = (n: string) => values(backend, input(args, n));
        addon.layerNormGrad(v("dy"), v("x"), v("gamma"), out, rows, cols, eps(args));
        return backend.makeTensorInfo(x.shape, "float32", out);
      },
      ["dy", "x", "gamma"],
    ),
    fused(
      FUSED_KERNELS.gelu,
      (args, backend) => {
        const x = input(args, "x");
        const out = backend.output(size(x.shape));
        addon.gelu(values(backend, x), out);
        return backend.makeTensorInfo(x.shape, "float32", out);
      },
      ["x"],
    ),
    fused(
      FUSED_KERNELS.geluGrad,
      (args, backend) => {
        const x = input(args, "x");
        const out = backend.output(size(x.shape));
        addon.geluGrad(values(backend, input(args, "dy")), values(backend, x), out);
        return backend.makeTensorInfo(x.shape, "float32", out);
      },
      ["dy", "x"],
    ),
    fused(
      FUSED_KERNELS.softmaxGrad,
      (args, backend) => {
        const p = input(args, "p");
        const [rows, cols] = rowsCols(p);
        const out = backend.output(size(p.shape));
        addon.softmaxGrad(values(backend, input(args, "dp")), values(backend, p), out, rows, cols);
        return backend.makeTensorInfo(p.shape, "float32", out);
      },
      ["dp", "p"],
    ),
  ];
}
