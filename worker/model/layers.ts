import * as tf from "@tensorflow/tfjs-core";

export const LAYER_NORM_EPS = 1e-6;

/** LayerNorm over the last axis with the biased variance, as torch.nn.LayerNorm computes it. */
export function layerNorm(
  x: tf.Tensor2D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  eps = LAYER_NORM_EPS,
): tf.Tensor2D {
  return tf.tidy(() => {
    const mean = tf.mean(x, -1, true);
    const centered = tf.sub(x, mean);
    const variance = tf.mean(tf.square(centered), -1, true);
    return tf.add(tf.mul(tf.mul(centered, tf.rsqrt(tf.add(variance, eps))), gamma), beta) as tf.Tensor2D;
  });
}

/** Exact GELU, 0.5·x·(1 + erf(x/√2)), as torch.nn.GELU() (approximate="none"). */
export function gelu(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1)));
}

/**
 * y = x Wᵀ + b with W frozen. Both W ([out, in]) and Wᵀ ([in, out]) are kept so that the forward pass and
 * the input gradient are plain 2-D matmuls without transpose flags (the wasm backend's fast path), and no
 * gradient for W is ever computed.
 */
export class FrozenLinear {
  static fromHost(
    weight: Float32Array,
    bias: Float32Array,
    outFeatures: number,
    inFeatures: number,
  ): FrozenLinear {
    return new FrozenLinear(tf.tensor2d(weight, [outFeatures, inFeatures]), tf.tensor1d(bias));
  }

  readonly wt: tf.Tensor2D;
  readonly w: tf.Tensor2D;
  readonly b: tf.Tensor1D;
  private readonly fn: (x: tf.Tensor2D) => tf.Tensor2D;

  /** Takes ownership of `w` ([out, in], as torch stores it) and `b`. */
  constructor(w: tf.Tensor2D, b: tf.Tensor1D) {
    this.w = w;
    this.wt = tf.tidy(() => tf.transpose(w) as tf.Tensor2D);
    this.b = b;
    const { wt } = this;
    this.fn = tf.customGrad(((x: tf.Tensor2D) => ({
      value: tf.add(tf.matMul(x, wt), b),
      gradFunc: (dy: tf.Tensor2D) => [tf.matMul(dy, w)],
    })) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (x: tf.Tensor2D) => tf.Tensor2D;
  }

  apply(x: tf.Tensor2D): tf.Tensor2D {
    return this.fn(x);
  }

  dispose(): void {
    this.w.dispose();
    this.wt.dispose();
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
