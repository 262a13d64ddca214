/** Exact GELU x·Φ(x) in one element-wise dispatch (the op chain: mul, erf, add, mul, mul). */
import type { KernelConfig, TensorInfo } from "@tensorflow/tfjs-core";
import { FUSED_KERNELS } from "../../model/fused_kernels.js";
import { elementProgramBase, GELU_WGSL, type WebgpuBackendLike, type WebgpuProgram } from "./program.js";

export class GeluProgram implements WebgpuProgram {
  readonly variableNames = ["x"];
  readonly shaderKey = "infloraGelu";
  readonly outputShape: number[];
  readonly dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  readonly workgroupSize: [number, number, number];
  readonly size = true;

  constructor(shape: number[]) {
    const base = elementProgramBase(shape);
    this.outputShape = base.outputShape;
    this.dispatchLayout = base.dispatchLayout;
    this.dispatch = base.dispatch;
    this.workgroupSize = base.workgroupSize;
  }

  getUserCode(): string {
    return `
  ${GELU_WGSL}
  fn main(index : i32) {
    if (index < uniforms.size) {
      let v = x[index];
      result[index] = v * inflora_cdf(v);
    }
  }`;
  }
}

export const geluConfig: KernelConfig = {
  kernelName: FUSED_KERNELS.gelu,
  backendName: "webgpu",
  kernelFunc: ({ inputs, backend }) => {
    const { x } = inputs as Record<string, TensorInfo>;
    return (backend as unknown as WebgpuBackendLike).runWebGPUProgram(
      new GeluProgram(x.shape),
      [x],
      "float32",
    );
  },
};
