/** GELU's input gradient dy·(Φ(x) + x·φ(x)) in one element-wise dispatch, Φ recomputed from x. */
import type { KernelConfig, TensorInfo } from "@tensorflow/tfjs-core";
import { FUSED_KERNELS } from "../../model/fused_kernels.js";
import { elementProgramBase, GELU_WGSL, type WebgpuBackendLike, type WebgpuProgram } from "./program.js";

export class GeluGradProgram implements WebgpuProgram {
  readonly variableNames = ["dy", "x"];
  readonly shaderKey = "infloraGeluGrad";
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
      let density = exp(-0.5 * v * v) * 0.3989422804014327;
      result[index] = dy[index] * (inflora_cdf(v) + v * density);
    }
  }`;
  }
}

export const geluGradConfig: KernelConfig = {
  kernelName: FUSED_KERNELS.geluGrad,
  backendName: "webgpu",
  kernelFunc: ({ inputs, backend }) => {
    const { dy, x } = inputs as Record<string, TensorInfo>;
    return (backend as unknown as WebgpuBackendLike).runWebGPUProgram(
      new GeluGradProgram(x.shape),
      [dy, x],
      "float32",
    );
  },
};
