/**
 * One head's share of the live adapter folded into a k/v weight, w + A_h B (or its transpose), in one
 * dispatch: the op chain transposes A and B, slices the head's rows, multiplies and adds (and transposes
 * once more for W_vᵀ). The rank r is small, so each output element runs its own length-r dot product.
 */
import type { KernelConfig, TensorInfo } from "@tensorflow/tfjs-core";
import { FUSED_KERNELS } from "../../model/fused_kernels.js";
import { elementProgramBase, type WebgpuBackendLike, type WebgpuProgram } from "./program.js";

export class FoldAddProgram implements WebgpuProgram {
  readonly variableNames = ["w", "aT", "bT"];
  readonly shaderKey: string;
  readonly uniforms = "rank : i32, aCols : i32, rowOffset : i32, wCols : i32,";
  readonly outputShape: number[];
  readonly dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  readonly workgroupSize: [number, number, number];
  readonly size = true;

  constructor(
    shape: number[],
    private readonly transposed: boolean,
  ) {
    const base = elementProgramBase(shape);
    this.outputShape = base.outputShape;
    this.dispatchLayout = base.dispatchLayout;
    this.dispatch = base.dispatch;
    this.workgroupSize = base.workgroupSize;
    this.shaderKey = `infloraFoldAdd_${transposed}`;
  }

  getUserCode(): string {
    // Output (row, col) is entry (h, j) of A_h B: (row, col) itself, or (col, row) when transposed.
    const [h, j] = this.transposed ? ["col", "row"] : ["row", "col"];
    return `
  fn main(index : i32) {
    if (index < uniforms.size) {
      let row = index / uniforms.wCols;
      let col = index % uniforms.wCols;
      let r = uniforms.rank;
      let a = ${h} + uniforms.rowOffset;
      var acc = 0.0;
      for (var k = 0; k < r; k++) {
        acc += aT[k * uniforms.aCols + a] * bT[${j} * r + k];
      }
      result[index] = w[index] + acc;
    }
  }`;
  }
}

export const foldAddConfig: KernelConfig = {
  kernelName: FUSED_KERNELS.foldAdd,
  backendName: "webgpu",
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { w, aT, bT } = inputs as Record<string, TensorInfo>;
    const { rowOffset, transposed } = attrs as { rowOffset: number; transposed: boolean };
    const [rank, aCols] = aT.shape;
    return (backend as unknown as WebgpuBackendLike).runWebGPUProgram(
      new FoldAddProgram(w.shape, transposed),
      [w, aT, bT],
      "float32",
      [
        { type: "int32", data: [rank] },
        { type: "int32", data: [aCols] },
        { type: "int32", data: [rowOffset] },
        { type: "int32", data: [w.shape[1]] },
      ],
    );
  },
};
