/**
 * LayerNorm and exact GELU as forward/backward pairs with hand-written gradients. The forward returns what
 * the backward needs (normalised input and 1/σ; the normal CDF), so a training pass saves two tensors per
 * op instead of every intermediate tfjs's autodiff would keep, and the backward is a handful of
 * element-wise ops without the broadcast-reduction kernels autodiff emits for broadcasting Sub/Mul.
 */
import * as tf from "@tensorflow/tfjs-core";
import { FUSED_KERNELS, hasFusedKernel, runFusedKernel } from "./fused_kernels.js";

export const LAYER_NORM_EPS = 1e-6;

/** What the op chain's LayerNorm backward reads. */
export interface LayerNormChainSaved {
  /** (x − mean) / σ, [rows, D]. */
  readonly xn: tf.Tensor2D;
  /** 1 / √(var + eps), [rows, 1]. */
  readonly rstd: tf.Tensor2D;
}

/** What a fused LayerNorm backward reads: the input itself (it recomputes the row statistics). */
export interface LayerNormFusedSaved {
  readonly x: tf.Tensor2D;
  readonly eps: number;
}

export type LayerNormSaved = LayerNormChainSaved | LayerNormFusedSaved;

/**
 * LayerNorm over the last axis with the biased variance, as torch.nn.LayerNorm computes it: the backend's
 * fused kernel where it has one (fused_kernels.ts), else the op chain.
 */
export function layerNormForward(
  x: tf.Tensor2D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  eps = LAYER_NORM_EPS,
): { y: tf.Tensor2D; saved: LayerNormSaved } {
  if (hasFusedKernel(FUSED_KERNELS.layerNorm)) {
    // A clone shares x's data: the caller may dispose x (vit_backprop.ts frees each block's input).
    const y = runFusedKernel<tf.Tensor2D>(FUSED_KERNELS.layerNorm, { x, gamma, beta }, { eps });
    return { y, saved: { x: tf.clone(x), eps } };
  }
  return layerNormChain(x, gamma, beta, eps);
}

function layerNormChain(
  x: tf.Tensor2D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  eps: number,
): { y: tf.Tensor2D; saved: LayerNormChainSaved } {
  const centered = tf.sub(x, tf.mean(x, -1, true));
  const variance = tf.mean(tf.square(centered), -1, true);
  const rstd = tf.rsqrt(tf.add(variance, eps)) as tf.Tensor2D;
  const xn = tf.mul(centered, rstd) as tf.Tensor2D;
  return { y: tf.add(tf.mul(xn, gamma), beta) as tf.Tensor2D, saved: { xn, rstd } };
}

/** dL/dx from dL/dy: rstd · (g − mean(g) − xn · mean(g · xn)) with g = dy · γ. */
export function layerNormBackward(dy: tf.Tensor2D, gamma: tf.Tensor1D, saved: LayerNormSaved): tf.Tensor2D {
  if ("x" in saved) {
    return runFusedKernel(FUSED_KERNELS.layerNormGrad, { dy, x: saved.x, gamma }, { eps: saved.eps });
  }
  return layerNormChainBackward(dy, gamma, saved);
}

function layerNormChainBackward(
  dy: tf.Tensor2D,
  gamma: tf.Tensor1D,
  saved: LayerNormChainSaved,
): tf.Tensor2D {
  const g = tf.mul(dy, gamma);
  const meanG = tf.mean(g, -1, true);
  const meanGx = tf.mean(tf.mul(g, saved.xn), -1, true);
  return tf.mul(tf.sub(tf.sub(g, meanG), tf.mul(saved.xn, meanGx)), saved.rstd) as tf.Tensor2D;
}

// erf(x) ≈ x·P(x²)/Q(x²) on [−4, 4] (Eigen's single-precision rational approximation); beyond ±4, erf is
// ±1 in float32. Max abs error 4.2e-7 against float64 erf, about what wasm's own Erf kernel gets (6.5e-7).
const ERF_P = [
  -1.60960333262415e-2, -2.95459980854025e-3, -7.34990630326855e-4, -5.69250639462346e-5,
  -2.10102402082508e-6, 2.77068142495902e-8, -2.72614225801306e-10,
];
const ERF_Q = [
  -1.42647390514189e-2, -7.37332916720468e-3, -1.68282697438203e-3, -2.13374055278905e-4,
  -1.45660718464996e-5,
];

/** Even polynomial Σ c_i t^i by Horner's rule, t = x². */
function horner(t: tf.Tensor, c: readonly number[]): tf.Tensor {
  let acc = tf.add(tf.mul(t, c[c.length - 1]), c[c.length - 2]);
  for (let i = c.length - 3; i >= 0; i--) acc = tf.add(tf.mul(t, acc), c[i]);
  return acc;
}

/**
 * erf through two dozen multiplies and adds. On wasm those are vectorised, while the Erf kernel is a
 * scalar libm call whose cost grows with |x| (2–3× slower than this on ViT activations).
 */
export function erfRational(x: tf.Tensor): tf.Tensor {
  const xc = tf.clipByValue(x, -4, 4);
  const t = tf.square(xc);
  return tf.div(tf.mul(xc, horner(t, ERF_P)), horner(t, ERF_Q));
}

/**
 * Exact GELU x·Φ(x), Φ(x) = (1 + erf(x/√2)) / 2, as torch.nn.GELU() (approximate="none"); also returns Φ
 * for geluBackward, except from the backend's fused kernel (its backward recomputes Φ from x).
 * `fast`: erf through erfRational.
 */
export function geluForward(x: tf.Tensor, fast = false): { y: tf.Tensor; cdf?: tf.Tensor } {
  if (hasFusedKernel(FUSED_KERNELS.gelu)) return { y: runFusedKernel(FUSED_KERNELS.gelu, { x }) };
  return geluChain(x, fast);
}

function geluChain(x: tf.Tensor, fast: boolean): { y: tf.Tensor; cdf: tf.Tensor } {
  const u = tf.mul(x, Math.SQRT1_2);
  const cdf = tf.mul(tf.add(fast ? erfRational(u) : tf.erf(u), 1), 0.5);
  return { y: tf.mul(x, cdf), cdf };
}

const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/**
 * dL/dx = dy · (Φ(x) + x·φ(x)), φ the normal density; `cdf` is geluForward's (none: the fused kernel).
 * `fast`: e^t for t ≤ 0 as elu(t) + 1 — on wasm, Elu runs vectorised in XNNPACK while Exp is a scalar loop
 * about 6× slower; the absolute error stays at one float32 ulp of 1, far below what the gradient needs.
 */
export function geluBackward(
  dy: tf.Tensor,
  x: tf.Tensor,
  cdf: tf.Tensor | undefined,
  fast: boolean,
): tf.Tensor {
  if (!cdf) return runFusedKernel(FUSED_KERNELS.geluGrad, { dy, x });
  const t = tf.mul(tf.square(x), -0.5);
  const gauss = fast ? tf.add(tf.elu(t), 1) : tf.exp(t);
  const slope = tf.add(cdf, tf.mul(tf.mul(gauss, x), INV_SQRT_2PI));
  return tf.mul(dy, slope);
}

/** Softmax's backward over the last axis: dS = P ⊙ (dP − Σ_j dP ⊙ P), fused where the backend can. */
export function softmaxBackward<T extends tf.Tensor>(dp: T, p: T): T {
  if (hasFusedKernel(FUSED_KERNELS.softmaxGrad)) return runFusedKernel(FUSED_KERNELS.softmaxGrad, { dp, p });
  return tf.mul(p, tf.sub(dp, tf.sum(tf.mul(dp, p), -1, true)));
}

/** Whether GELU should use the wasm-friendly erf and exp (erfRational, Elu). */
export function preferFastGelu(): boolean {
  return tf.getBackend() === "wasm";
}

type Grad = (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor[];

// Gradients of the fused forward kernels, for autodiff users (the demo's pretraining runs the model's own
// forward pass under tf.variableGrads): a backend that registers a fused kernel (blas, webgpu) is then as
// differentiable as the op chain. The training pass never asks for these; it writes its backward by hand.
tf.registerGradient({
  kernelName: FUSED_KERNELS.layerNorm,
  inputsToSave: ["x", "gamma"],
  gradFunc: (dy, saved, attrs) => {
    const [x, gamma] = saved as [tf.Tensor2D, tf.Tensor1D];
    const eps = (attrs as unknown as { eps: number }).eps;
    const d = dy as tf.Tensor2D;
    const { saved: chain } = layerNormChain(x, gamma, tf.zerosLike(gamma), eps);
    return {
      x: () => runFusedKernel(FUSED_KERNELS.layerNormGrad, { dy: d, x, gamma }, { eps }),
      gamma: () => tf.sum(tf.mul(d, chain.xn), 0),
      beta: () => tf.sum(d, 0),
    };
  },
});

tf.registerGradient({
  kernelName: FUSED_KERNELS.gelu,
  inputsToSave: ["x"],
  gradFunc: (dy, saved) => {
    const [x] = saved;
    return { x: () => runFusedKernel(FUSED_KERNELS.geluGrad, { dy: dy as tf.Tensor, x }) };
  },
});

type LayerNormOp = (x: tf.Tensor2D, gamma: tf.Tensor1D, beta: tf.Tensor1D) => tf.Tensor2D;

function layerNormOp(eps: number): LayerNormOp {
  return tf.customGrad(((x: tf.Tensor2D, gamma: tf.Tensor1D, beta: tf.Tensor1D, save: tf.GradSaveFunc) => {
    // The op chain always: γ's gradient reads xn.
    const { y, saved } = layerNormChain(x, gamma, beta, eps);
    save([saved.xn, saved.rstd, gamma]);
    const gradFunc: Grad = (dy, [xn, rstd, g]) => [
      layerNormChainBackward(dy as tf.Tensor2D, g as tf.Tensor1D, {
        xn: xn as tf.Tensor2D,
        rstd: rstd as tf.Tensor2D,
      }),
      tf.sum(tf.mul(dy, xn), 0),
      tf.sum(dy, 0),
    ];
    return { value: y, gradFunc };
  }) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as LayerNormOp;
}

const layerNormOps = new Map<number, LayerNormOp>();

/** LayerNorm as one tfjs op for autodiff users: x, γ and β all get (hand-written) gradients. */
export function layerNorm(
  x: tf.Tensor2D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  eps = LAYER_NORM_EPS,
): tf.Tensor2D {
  let op = layerNormOps.get(eps);
  if (!op) {
    op = layerNormOp(eps);
    layerNormOps.set(eps, op);
  }
  return op(x, gamma, beta);
}

/** Exact GELU as one tfjs op for autodiff users. */
export const gelu = tf.customGrad(((x: tf.Tensor, save: tf.GradSaveFunc) => {
  const fast = preferFastGelu();
  const { y, cdf } = geluChain(x, fast);
  save([x, cdf]);
  const gradFunc: Grad = (dy, [xs, c]) => [geluBackward(dy, xs, c, fast)];
  return { value: y, gradFunc };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (x: tf.Tensor) => tf.Tensor;
