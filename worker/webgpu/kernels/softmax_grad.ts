/**
 * The attention softmax's backward, dS = P ⊙ (dP − Σ_j dP ⊙ P) over the last axis, in one dispatch (the op
 * chain: mul, sum, sub, mul). The forward needs no kernel of ours: the 1/√Dh scale is folded into W_q when
 * the weights load (worker/model/head_weights.ts), and tfjs's webgpu Softmax is already one dispatch.
 */
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

export class SoftmaxGradProgram implements WebgpuProgram {
  readonly variableNames = ["dp", "p"];
  readonly shaderKey = "infloraSoftmaxGrad";
  readonly uniforms = "rows : i32, cols : i32,";
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
    let row = index / ${ROW_THREADS};
    let tid = i32(localId.x);
    let N = select(0, uniforms.cols, row < uniforms.rows);
    let base = row * uniforms.cols;
    var s = 0.0;
    for (var c = tid; c < N; c += ${ROW_THREADS}) { s += dp[base + c] * p[base + c]; }
    let dot = rowSum(s, tid);
    for (var c = tid; c < N; c += ${ROW_THREADS}) {
      result[base + c] = p[base + c] * (dp[base + c] - dot);
    }
  }`;
  }
}

export const softmaxGradConfig: KernelConfig = {
  kernelName: FUSED_KERNELS.softmaxGrad,
  backendName: "webgpu",
  kernelFunc: ({ inputs, backend }) => {
    const { dp, p } = inputs as Record<string, TensorInfo>;
    const { rows, cols } = rowsOf(p.shape);
    return (backend as unknown as WebgpuBackendLike).runWebGPUProgram(
      new SoftmaxGradProgram(p.shape),
      [dp, p],
      "float32",
      [
        { type: "int32", data: [rows] },
        { type: "int32", data: [cols] },
      ],
    );
  },
};
