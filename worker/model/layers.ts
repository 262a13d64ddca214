import * as tf from "@tensorflow/tfjs-core";
import { transpose2d } from "../../common/permute.js";

export { gelu, LAYER_NORM_EPS, layerNorm } from "./fused_ops.js";

/**
 * y = x Wᵀ + b with W frozen; no gradient for W is ever computed. On wasm both W ([out, in]) and Wᵀ
 * ([in, out]) are kept so that the forward pass and the input gradient are plain 2-D matmuls without
 * transpose flags (its fast path). Elsewhere (blas, tfjs-node, cpu) a transpose flag costs nothing, so
 * only W is kept: for ViT-B/16 the MLP weights alone are 226 MB less per worker (and on a GPU).
 */
export class FrozenLinear {
  /** Builds the layouts on the host: no transpose kernel, no temporary tensor. */
  static fromHost(
    weight: Float32Array,
    bias: Float32Array,
    outFeatures: number,
    inFeatures: number,
    keepTranspose = tf.getBackend() === "wasm",
  ): FrozenLinear {
    return new FrozenLinear(
      tf.tensor2d(weight, [outFeatures, inFeatures]),
      tf.tensor1d(bias),
      keepTranspose
        ? tf.tensor2d(transpose2d(weight, outFeatures, inFeatures), [inFeatures, outFeatures])
        : null,
    );
  }

  /** Wᵀ, or null when the backend multiplies with transpose flags. */
  readonly wt: tf.Tensor2D | null;
  readonly w: tf.Tensor2D;
  readonly b: tf.Tensor1D;
  private readonly fn: (x: tf.Tensor2D) => tf.Tensor2D;

  /**
   * Takes ownership of `w` ([out, in], as torch stores it), `b` and `wt` (its transpose; undefined: made
   * here; null: not kept).
   */
  constructor(w: tf.Tensor2D, b: tf.Tensor1D, wt?: tf.Tensor2D | null) {
    this.w = w;
    this.wt = wt === undefined ? tf.tidy(() => tf.transpose(w) as tf.Tensor2D) : wt;
    this.b = b;
    this.fn = tf.customGrad(((x: tf.Tensor2D) => ({
      value: this.forward(x),
      gradFunc: (dy: tf.Tensor2D) => [this.backward(dy)],
    })) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (x: tf.Tensor2D) => tf.Tensor2D;
  }

  /** For autodiff users: the input gradient is hand-written (see backward). */
  apply(x: tf.Tensor2D): tf.Tensor2D {
    return this.fn(x);
  }

  /** x Wᵀ + b as one fused kernel (the bias add rides along in XNNPACK on wasm, in our GEMM on blas). */
  forward(x: tf.Tensor2D): tf.Tensor2D {
    if (this.wt) return tf.fused.matMul({ a: x, b: this.wt, bias: this.b }) as tf.Tensor2D;
    return tf.fused.matMul({ a: x, b: this.w, transposeB: true, bias: this.b }) as tf.Tensor2D;
  }

  /** dL/dx = dL/dy · W. */
  backward(dy: tf.Tensor2D): tf.Tensor2D {
    return tf.matMul(dy, this.w) as tf.Tensor2D;
  }

  dispose(): void {
    this.w.dispose();
    this.wt?.dispose();
    this.b.dispose();
  }
}

/** Cuts CHW images into rows of flattened patches in (C, p, p) order, the order of timm's conv weight. */
export function imagesToPatches(
  images: Float32Array,
  count: number,
  channels: number,
  size: number,
  patch: number,
): Float32Array {
  const grid = size / patch;
  const rowLen = channels * patch * patch;
  const out = new Float32Array(count * grid * grid * rowLen);
  let o = 0;
  for (let n = 0; n < count; n++) {
    const imgBase = n * channels * size * size;
    for (let gy = 0; gy < grid; gy++) {
      for (let gx = 0; gx < grid; gx++) {
        for (let c = 0; c < channels; c++) {
          const planeBase = imgBase + c * size * size;
          for (let py = 0; py < patch; py++) {
            const src = planeBase + (gy * patch + py) * size + gx * patch;
            for (let px = 0; px < patch; px++) out[o++] = images[src + px];
          }
        }
      }
    }
  }
  return out;
}
