/**
 * xᵀx over the tokens of a block's attention input ([T, D] → [D, D]) in one dispatch, without
 * materialising xᵀ: 16×16 output tiles, each stepping through the tokens 16 at a time with both column
 * strips staged in workgroup memory. Entry (i, j) and (j, i) are the same sum in the same order, so the
 * result is exactly symmetric.
 */
import type { KernelConfig, TensorInfo } from "@tensorflow/tfjs-core";
import { FUSED_KERNELS } from "../../model/fused_kernels.js";
import type { WebgpuBackendLike, WebgpuProgram } from "./program.js";

const TILE = 16;

export class CovarianceProgram implements WebgpuProgram {
  readonly variableNames = ["x"];
  readonly shaderKey = "infloraCovariance";
  readonly uniforms = "rows : i32, cols : i32,";
  readonly outputShape: number[];
  readonly dispatchLayout = { x: [1], y: [0] };
  dispatch: [number, number, number];
  readonly workgroupSize: [number, number, number] = [TILE, TILE, 1];

  constructor(cols: number) {
    this.outputShape = [cols, cols];
    const tiles = Math.ceil(cols / TILE);
    this.dispatch = [tiles, tiles, 1];
  }

  getUserCode(): string {
    return `
  var<workgroup> stripI : array<f32, ${TILE * TILE}>;
  var<workgroup> stripJ : array<f32, ${TILE * TILE}>;
  fn main() {
    let lx = i32(localId.x);
    let ly = i32(localId.y);
    let i0 = i32(workgroupId.y) * ${TILE};
    let j0 = i32(workgroupId.x) * ${TILE};
    let T = uniforms.rows;
    let D = uniforms.cols;
    var acc = 0.0;
    for (var t0 = 0; t0 < T; t0 += ${TILE}) {
      let t = t0 + ly;
      var vi = 0.0;
      var vj = 0.0;
      if (t < T && i0 + lx < D) { vi = x[t * D + i0 + lx]; }
      if (t < T && j0 + lx < D) { vj = x[t * D + j0 + lx]; }
      stripI[ly * ${TILE} + lx] = vi;
      stripJ[ly * ${TILE} + lx] = vj;
      workgroupBarrier();
      for (var k = 0; k < ${TILE}; k++) {
        acc += stripI[k * ${TILE} + ly] * stripJ[k * ${TILE} + lx];
      }
      workgroupBarrier();
    }
    let i = i0 + ly;
    let j = j0 + lx;
    if (i < D && j < D) { result[i * D + j] = acc; }
  }`;
  }
}

export const covarianceConfig: KernelConfig = {
  kernelName: FUSED_KERNELS.covariance,
  backendName: "webgpu",
  kernelFunc: ({ inputs, backend }) => {
    const { x } = inputs as Record<string, TensorInfo>;
    const [rows, cols] = x.shape;
    return (backend as unknown as WebgpuBackendLike).runWebGPUProgram(
      new CovarianceProgram(cols),
      [x],
      "float32",
      [
        { type: "int32", data: [rows] },
        { type: "int32", data: [cols] },
      ],
    );
  },
};
