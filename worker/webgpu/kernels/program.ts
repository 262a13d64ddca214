/**
 * What our WGSL kernels share: the shape of a tfjs-backend-webgpu program (its `makeShader` wraps
 * getUserCode with the input buffers named by variableNames, `result`, and the `uniforms` struct) and the
 * part of the backend we call. Typed here rather than imported because the package is an optional
 * dependency, loaded only when the webgpu backend is chosen.
 */
import type { DataType, TensorInfo } from "@tensorflow/tfjs-core";

export interface WebgpuProgram {
  readonly variableNames: string[];
  readonly outputShape: number[];
  /** Part of the pipeline cache key: must differ wherever the generated WGSL differs. */
  readonly shaderKey: string;
  /** {x} alone: main(index) gets a flat global index; with y, main() reads workgroupId/localId itself. */
  readonly dispatchLayout: { x: number[]; y?: number[] };
  dispatch: [number, number, number];
  readonly workgroupSize: [number, number, number];
  /** Adds `uniforms.size` (the output's element count). */
  readonly size?: boolean;
  /** Extra uniform fields, WGSL struct syntax ("eps : f32, cols : i32,"). */
  readonly uniforms?: string;
  getUserCode(): string;
}

export interface ProgramUniform {
  readonly type: "float32" | "int32";
  readonly data: number[];
}

export interface WebgpuBackendLike {
  runWebGPUProgram(
    program: WebgpuProgram,
    inputs: TensorInfo[],
    outputDtype: DataType,
    uniforms?: ProgramUniform[],
  ): TensorInfo;
}

/** Threads per row of the row kernels (one workgroup per row, a tree reduction in workgroup memory). */
export const ROW_THREADS = 64;

/** Threads per workgroup of the element-wise kernels. */
export const ELEMENT_THREADS = 64;

/** The rows of a tensor whose last axis is the reduced one. */
export function rowsOf(shape: readonly number[]): { rows: number; cols: number } {
  const cols = shape[shape.length - 1];
  const rows = shape.slice(0, -1).reduce((a, b) => a * b, 1);
  return { rows, cols };
}

/**
 * `rowSum(v, tid)`: the sum of v over the workgroup's ROW_THREADS threads, returned to every thread. Every
 * thread must call it (it holds barriers); the tree order is fixed, so the result is deterministic.
 */
export const ROW_SUM_WGSL = `
  var<workgroup> rowPartial : array<f32, ${ROW_THREADS}>;
  fn rowSum(v : f32, tid : i32) -> f32 {
    rowPartial[tid] = v;
    workgroupBarrier();
    for (var s = ${ROW_THREADS / 2}; s > 0; s = s >> 1u) {
      if (tid < s) {
        rowPartial[tid] = rowPartial[tid] + rowPartial[tid + s];
      }
      workgroupBarrier();
    }
    let total = rowPartial[0];
    workgroupBarrier();
    return total;
  }
`;

/** One workgroup per row: rows beyond the tensor (a dispatch reshaped past the per-dimension limit) see cols 0. */
export function rowProgramBase(
  outputShape: number[],
): Pick<WebgpuProgram, "outputShape" | "dispatchLayout" | "dispatch" | "workgroupSize"> {
  const { rows } = rowsOf(outputShape);
  return {
    outputShape,
    dispatchLayout: { x: outputShape.map((_, i) => i) },
    dispatch: [rows, 1, 1],
    workgroupSize: [ROW_THREADS, 1, 1],
  };
}

export function elementProgramBase(
  outputShape: number[],
): Pick<WebgpuProgram, "outputShape" | "dispatchLayout" | "dispatch" | "workgroupSize" | "size"> {
  const size = outputShape.reduce((a, b) => a * b, 1);
  return {
    outputShape,
    dispatchLayout: { x: outputShape.map((_, i) => i) },
    dispatch: [Math.ceil(size / ELEMENT_THREADS), 1, 1],
    workgroupSize: [ELEMENT_THREADS, 1, 1],
    size: true,
  };
}

/**
 * erf(x) for f32: x·P(x²)/Q(x²) on [−4, 4], ±1 beyond — the rational approximation of
 * worker/model/fused_ops.ts (Eigen's single-precision one, max abs error 4.2e-7), and Φ(x) from it.
 */
export const GELU_WGSL = `
  fn inflora_erf(x : f32) -> f32 {
    let xc = clamp(x, -4.0, 4.0);
    let t = xc * xc;
    var p = -2.72614225801306e-10;
    p = p * t + 2.77068142495902e-8;
    p = p * t - 2.10102402082508e-6;
    p = p * t - 5.69250639462346e-5;
    p = p * t - 7.34990630326855e-4;
    p = p * t - 2.95459980854025e-3;
    p = p * t - 1.60960333262415e-2;
    var q = -1.45660718464996e-5;
    q = q * t - 2.13374055278905e-4;
    q = q * t - 1.68282697438203e-3;
    q = q * t - 7.37332916720468e-3;
    q = q * t - 1.42647390514189e-2;
    return xc * p / q;
  }
  fn inflora_cdf(x : f32) -> f32 {
    return 0.5 * (1.0 + inflora_erf(x * 0.7071067811865476));
  }
`;
