/**
 * Each fused WGSL kernel (worker/webgpu/kernels/) against the op chain it replaces, both on the webgpu
 * backend (lavapipe in CI), on sizes that are not multiples of any workgroup size. The model's own dispatch
 * points are called twice: with our kernels registered (fused) and with them unregistered (the op chain).
 *
 * Bounds: both sides are float32 evaluations of the same formula in different orders. A float32 sum of n
 * terms is within (n−1)·u·Σ|terms| of the exact sum (u = 2⁻²⁴), so two orders differ by at most twice
 * that; where a reduction feeds a normalisation (LayerNorm) the bound is taken relative to the output's
 * scale with n = D. GELU's erf differs by construction: ours is fused_ops.ts's rational approximation
 * (|error| ≤ 4.2e-7), tfjs's webgpu Erf is Abramowitz–Stegun 7.1.26 (|error| ≤ 1.5e-7), so Φ may differ by
 * 2.9e-7 and x·Φ(x) by 2.9e-7·|x|, plus rounding.
 */
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { covarianceSum } from "../../worker/model/covariance.js";
import { FUSED_KERNELS, hasFusedKernel } from "../../worker/model/fused_kernels.js";
import {
  geluBackward,
  geluForward,
  layerNormBackward,
  layerNormForward,
  softmaxBackward,
} from "../../worker/model/fused_ops.js";
import { foldLiveAdapter } from "../../worker/model/live_fold.js";
import { registerWebgpuKernels, WEBGPU_KERNELS } from "../../worker/webgpu/kernels/index.js";
import { randomArray } from "../helpers/tiny_vit.js";
import { useWebgpu } from "../helpers/webgpu.js";

const U = 2 ** -24;

/** Runs `fn` on the op chain: our kernels unregistered for its duration. */
async function onChain<T>(fn: () => Promise<T>): Promise<T> {
  for (const k of WEBGPU_KERNELS) tf.unregisterKernel(k.kernelName, k.backendName);
  try {
    return await fn();
  } finally {
    registerWebgpuKernels();
  }
}

/** Values of the tensors `fn` returns, read asynchronously (webgpu has no synchronous readback in Node). */
async function values(fn: () => tf.Tensor[]): Promise<Float32Array[]> {
  const ts = tf.tidy(fn);
  const out = await Promise.all(ts.map((t) => t.data() as Promise<Float32Array>));
  tf.dispose(ts);
  return out;
}

const everyKernel = (present: boolean) =>
  expect(Object.values(FUSED_KERNELS).map(hasFusedKernel)).toEqual(
    Object.values(FUSED_KERNELS).map(() => present),
  );

async function bothWays(fn: () => tf.Tensor[]): Promise<{ fused: Float32Array[]; chain: Float32Array[] }> {
  everyKernel(true);
  const fused = await values(fn);
  const chain = await onChain(() => {
    everyKernel(false);
    return values(fn);
  });
  return { fused, chain };
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  expect(Number.isFinite(d)).toBe(true);
  return d;
}

const maxAbs = (a: ArrayLike<number>) => Array.from(a).reduce((m, v) => Math.max(m, Math.abs(v)), 0);

describe("fused WGSL kernels on webgpu match the op chain", () => {
  const keep: tf.Tensor[] = [];
  const t = <T extends tf.Tensor>(x: T): T => {
    keep.push(x);
    return x;
  };

  beforeAll(async () => {
    await useWebgpu();
    registerWebgpuKernels();
    registerWebgpuKernels(); // idempotent
  });
  afterAll(() => tf.dispose(keep));

  it("LayerNorm forward and backward (37 rows × 77, eps 1e-6)", async () => {
    const [R, D] = [37, 77];
    const x = t(tf.add(tf.tensor2d(randomArray(R * D, 1, 3), [R, D]), 0.7) as tf.Tensor2D);
    const gamma = t(tf.add(tf.tensor1d(randomArray(D, 2)), 1) as tf.Tensor1D);
    const beta = t(tf.tensor1d(randomArray(D, 3)));
    const dy = t(tf.tensor2d(randomArray(R * D, 4), [R, D]));
    const { fused, chain } = await bothWays(() => {
      const f = layerNormForward(x, gamma, beta);
      return [f.y, layerNormBackward(dy, gamma, f.saved)];
    });
    // Row sums of D terms normalised by σ: within 2·D·u relative to the output's scale, times a small
    // factor for the mean's error entering the centred sum and the rsqrt's own rounding.
    for (const k of [0, 1]) expect(maxAbsDiff(fused[k], chain[k])).toBeLessThan(8 * D * U * maxAbs(chain[k]));
  });

  it("GELU forward and backward (3 × 1001 elements, far tails included)", async () => {
    const n = 3 * 1001;
    const xs = randomArray(n, 5, 6);
    const x = t(tf.tensor2d(xs, [3, 1001]));
    const dy = t(tf.tensor2d(randomArray(n, 6), [3, 1001]));
    const { fused, chain } = await bothWays(() => {
      const f = geluForward(x);
      return [f.y, geluBackward(dy, x, f.cdf, false)];
    });
    const dys = await dy.data();
    for (let i = 0; i < n; i++) {
      const ax = Math.abs(xs[i]);
      // erf approximations 2.9e-7 apart in Φ, plus a few roundings of values ≤ |x|.
      expect(Math.abs(fused[0][i] - chain[0][i])).toBeLessThan(3e-7 * ax + 8 * U * (1 + ax));
      // Φ's difference and the density's rounding, scaled by |dy|.
      expect(Math.abs(fused[1][i] - chain[1][i])).toBeLessThan(Math.abs(dys[i]) * (3e-7 + 8 * U * (1 + ax)));
    }
  });

  it("attention softmax backward ([3, 13, 70] and 2-D [13, 129])", async () => {
    for (const shape of [
      [3, 13, 70],
      [13, 129],
    ]) {
      const n = shape.reduce((a, b) => a * b, 1);
      const p = t(tf.softmax(tf.tensor(randomArray(n, 7, 4), shape)));
      const dp = t(tf.tensor(randomArray(n, 8), shape));
      const { fused, chain } = await bothWays(() => [softmaxBackward(dp, p)]);
      const cols = shape[shape.length - 1];
      // Σ_j dP⊙P over `cols` terms with Σ P = 1 and |dP| ≤ 1: two orders within 2·cols·u; times P ≤ 1.
      expect(maxAbsDiff(fused[0], chain[0])).toBeLessThan(2 * cols * U + 4 * U);
    }
  });

  it("covariance xᵀx over tokens (53 tokens × 77: a full and a partial 64-column tile)", async () => {
    const [T, D] = [53, 77];
    const xs = randomArray(T * D, 9, 2);
    const x = t(tf.tensor2d(xs, [T, D]));
    const { fused, chain } = await bothWays(() => [covarianceSum(x)]);
    for (let i = 0; i < D; i++) {
      for (let j = 0; j < D; j++) {
        let absSum = 0;
        for (let k = 0; k < T; k++) absSum += Math.abs(xs[k * D + i] * xs[k * D + j]);
        expect(Math.abs(fused[0][i * D + j] - chain[0][i * D + j])).toBeLessThanOrEqual(2 * T * U * absSum);
        expect(fused[0][i * D + j]).toBe(fused[0][j * D + i]);
      }
    }
  });

  it("live adapter fold, every head (D 39, 3 heads, rank 5)", async () => {
    const [D, H, r] = [39, 3, 5];
    const dh = D / H;
    const heads = Array.from({ length: H }, (_, h) => ({
      wk: t(tf.tensor2d(randomArray(dh * D, 10 + h), [dh, D])),
      wvT: t(tf.tensor2d(randomArray(D * dh, 20 + h), [D, dh])),
      bv: t(tf.tensor1d(randomArray(dh, 30 + h))),
      wv: t(tf.tensor2d(randomArray(dh * D, 40 + h), [dh, D])),
    }));
    const adapter = {
      BT: [t(tf.tensor2d(randomArray(D * r, 50), [D, r]))],
      AkT: [t(tf.tensor2d(randomArray(r * D, 51), [r, D]))],
      AvT: [t(tf.tensor2d(randomArray(r * D, 52), [r, D]))],
    };
    const folded = () => {
      const { fold, owned } = foldLiveAdapter([{ layout: "perHead", heads }], adapter);
      const kv = fold.kv[0];
      if (kv.layout !== "perHead") throw new Error("the fold changed the layout");
      const out = kv.heads.flatMap((h) => [h.wk, h.wvT, h.wv].map((w) => w.clone()));
      tf.dispose(owned);
      return out;
    };
    const { fused, chain } = await bothWays(folded);
    expect(fused.length).toBe(3 * H);
    // w + an r-term dot product with |w|, |a|, |b| ≤ 1: two orders within 2·(r + 1)·u·(1 + r).
    for (let k = 0; k < fused.length; k++) {
      expect(maxAbsDiff(fused[k], chain[k])).toBeLessThan(2 * (r + 1) * U * (1 + r));
    }
  });
});
