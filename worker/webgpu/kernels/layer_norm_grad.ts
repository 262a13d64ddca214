/**
 * LayerNorm's input gradient in one dispatch, rstd·(g − mean(g) − xn·mean(g·xn)) with g = dy·γ. The row's
 * statistics are recomputed from x rather than saved: two more reads of a row the kernel reads anyway,
 * and nothing but x kept between the passes.
 */
import type { KernelConfig, TensorInfo } from "@tensorflow/tfjs-core";
import { FUSED_KERNELS } from "../../model/fused_kernels.js";
import { ROW_PREAMBLE_WGSL, ROW_STATS_WGSL } from "./layer_norm.js";
import {
  ROW_SUM_WGSL,
  ROW_THREADS,
  rowProgramBase,
  rowsOf,
  type WebgpuBackendLike,
  type WebgpuProgram,
} from "./program.js";

export class LayerNormGradProgram implements WebgpuProgram {
  readonly variableNames = ["dy", "x", "gamma"];
  readonly shaderKey = "infloraLayerNormGrad";
  readonly uniforms = "eps : f32, rows : i32, cols : i32,";
  readonly outputShape: number[];
  readonly dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  readonly workgroupSize: [number, number, number];

  constructor(shape: number[]) {
    const base = rowProgramBase(shape);
    this.outputShape = base.outputShape;
    this.dispatchLayout = base.dispatchLayout;
    this.dispatch = base.dispatch;
    this.workgroupSize = base.workgroupSize;
  }

  getUserCode(): string {
    return `
  ${ROW_SUM_WGSL}
  fn main(index : i32) {
    ${ROW_PREAMBLE_WGSL}
    ${ROW_STATS_WGSL}
    var sg = 0.0;
    var sgx = 0.0;
    for (var c = tid; c < D; c += ${ROW_THREADS}) {
      let g = dy[base + c] * gamma[c];
      sg += g;
      sgx += g * (x[base + c] - mean) * rstd;
    }
    let meanG = rowSum(sg, tid) / f32(D);
    let meanGx = rowSum(sgx, tid) / f32(D);
    for (var c = tid; c < D; c += ${ROW_THREADS}) {
      let g = dy[base + c] * gamma[c];
      let xn = (x[base + c] - mean) * rstd;
      result[base + c] = (g - meanG - xn * meanGx) * rstd;
    }
  }`;
  }
}

export const layerNormGradConfig: KernelConfig = {
  kernelName: FUSED_KERNELS.layerNormGrad,
  backendName: "webgpu",
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { dy, x, gamma } = inputs as Record<string, TensorInfo>;
    const eps = (attrs as { eps: number }).eps;
    const { rows, cols } = rowsOf(x.shape);
    return (backend as unknown as WebgpuBackendLike).runWebGPUProgram(
      new LayerNormGradProgram(x.shape),
      [dy, x, gamma],
      "float32",
      [
        { type: "float32", data: [eps] },
        { type: "int32", data: [rows] },
        { type: "int32", data: [cols] },
      ],
    );
  },
};
