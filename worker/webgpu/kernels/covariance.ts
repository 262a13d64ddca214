/**
 * xᵀx over the tokens of a block's attention input ([T, D] → [D, D]) in one dispatch, without
 * materialising xᵀ: a workgroup of 16×16 threads computes a 64×64 output tile, each thread a 4×4 block
 * of it, stepping through the tokens 16 at a time with both 64-column strips staged in workgroup memory.
 * Entry (i, j) and (j, i) are the same products summed in the same token order, so the result is exactly
 * symmetric.
 */
import type { KernelConfig, TensorInfo } from "@tensorflow/tfjs-core";
import { FUSED_KERNELS } from "../../model/fused_kernels.js";
import type { WebgpuBackendLike, WebgpuProgram } from "./program.js";

/** Threads per side of the workgroup, outputs per side of a thread's block, tokens per stage. */
const THREADS = 16;
const BLOCK = 4;
const TILE = THREADS * BLOCK;
const TOKENS = 16;

export class CovarianceProgram implements WebgpuProgram {
  readonly variableNames = ["x"];
  readonly shaderKey = "infloraCovariance";
  readonly uniforms = "rows : i32, cols : i32,";
  readonly outputShape: number[];
  readonly dispatchLayout = { x: [1], y: [0] };
  dispatch: [number, number, number];
  readonly workgroupSize: [number, number, number] = [THREADS, THREADS, 1];

  constructor(cols: number) {
    this.outputShape = [cols, cols];
    const tiles = Math.ceil(cols / TILE);
    this.dispatch = [tiles, tiles, 1];
  }

  getUserCode(): string {
    const strip = TOKENS * TILE;
    return `
  var<workgroup> stripI : array<f32, ${strip}>;
  var<workgroup> stripJ : array<f32, ${strip}>;
  fn main() {
    let lx = i32(localId.x);
    let ly = i32(localId.y);
    let tid = ly * ${THREADS} + lx;
    let i0 = i32(workgroupId.y) * ${TILE};
    let j0 = i32(workgroupId.x) * ${TILE};
    let T = uniforms.rows;
    let D = uniforms.cols;
    var acc : array<f32, ${BLOCK * BLOCK}>;
    for (var t0 = 0; t0 < T; t0 += ${TOKENS}) {
      for (var e = tid; e < ${strip}; e += ${THREADS * THREADS}) {
        let t = t0 + e / ${TILE};
        let c = e % ${TILE};
        var vi = 0.0;
        var vj = 0.0;
        if (t < T && i0 + c < D) { vi = x[t * D + i0 + c]; }
        if (t < T && j0 + c < D) { vj = x[t * D + j0 + c]; }
        stripI[e] = vi;
        stripJ[e] = vj;
      }
      workgroupBarrier();
      for (var k = 0; k < ${TOKENS}; k++) {
        var a : array<f32, ${BLOCK}>;
        var b : array<f32, ${BLOCK}>;
        for (var u = 0; u < ${BLOCK}; u++) {
          a[u] = stripI[k * ${TILE} + ly * ${BLOCK} + u];
          b[u] = stripJ[k * ${TILE} + lx * ${BLOCK} + u];
        }
        for (var u = 0; u < ${BLOCK}; u++) {
          for (var v = 0; v < ${BLOCK}; v++) {
            acc[u * ${BLOCK} + v] += a[u] * b[v];
          }
        }
      }
      workgroupBarrier();
    }
    for (var u = 0; u < ${BLOCK}; u++) {
      for (var v = 0; v < ${BLOCK}; v++) {
        let i = i0 + ly * ${BLOCK} + u;
        let j = j0 + lx * ${BLOCK} + v;
        if (i < D && j < D) { result[i * D + j] = acc[u * ${BLOCK} + v]; }
      }
    }
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
