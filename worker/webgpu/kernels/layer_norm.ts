/** LayerNorm forward in one dispatch: a workgroup per row reduces the mean, then the variance, then writes y. */
import type { KernelConfig, TensorInfo } from "@tensorflow/tfjs-core";
import { FUSED_KERNELS } from "../../model/fused_kernels.js";
import {
  ROW_SUM_WGSL,
  ROW_THREADS,
  rowProgramBase,
  rowsOf,
  type WebgpuBackendLike,
  type WebgpuProgram,
} from "./program.js";

/**
 * The row's mean and 1/σ, as WGSL statements leaving `mean` and `rstd` for row `row` of `x` (cols D,
 * stride D). Two passes over the row (mean, then the centred sum of squares), as the op chain computes it.
 */
export const ROW_STATS_WGSL = `
    var s = 0.0;
    for (var c = tid; c < D; c += ${ROW_THREADS}) { s += x[base + c]; }
    let mean = rowSum(s, tid) / f32(D);
    var q = 0.0;
    for (var c = tid; c < D; c += ${ROW_THREADS}) { let d = x[base + c] - mean; q += d * d; }
    let rstd = inverseSqrt(rowSum(q, tid) / f32(D) + uniforms.eps);
`;

/** The row preamble of both LayerNorm kernels: `tid`, `D` (0 past the last row), `base`. */
export const ROW_PREAMBLE_WGSL = `
    let row = index / ${ROW_THREADS};
    let tid = i32(localId.x);
    let D = select(0, uniforms.cols, row < uniforms.rows);
    let base = row * uniforms.cols;
`;

export class LayerNormProgram implements WebgpuProgram {
  readonly variableNames = ["x", "gamma", "beta"];
  readonly shaderKey = "infloraLayerNorm";
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
    for (var c = tid; c < D; c += ${ROW_THREADS}) {
      result[base + c] = (x[base + c] - mean) * rstd * gamma[c] + beta[c];
    }
  }`;
  }
}

export const layerNormConfig: KernelConfig = {
  kernelName: FUSED_KERNELS.layerNorm,
  backendName: "webgpu",
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { x, gamma, beta } = inputs as Record<string, TensorInfo>;
    const eps = (attrs as { eps: number }).eps;
    const { rows, cols } = rowsOf(x.shape);
    return (backend as unknown as WebgpuBackendLike).runWebGPUProgram(
      new LayerNormProgram(x.shape),
      [x, gamma, beta],
      "float32",
      [
        { type: "float32", data: [eps] },
        { type: "int32", data: [rows] },
        { type: "int32", data: [cols] },
      ],
    );
  },
};
