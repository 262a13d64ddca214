/**
 * Classifier alignment of InfLoRA+CA (docs/design.md#classifier-alignment), on the coordinator: after task
 * t > 0, all heads 0..t are retrained on features drawn from each seen class's Gaussian N(μ_c·f_c, Σ_c),
 * with the backbone frozen, as the official `_stage2_compact_classifier` does. Samples come from the
 * counter-based RNG keyed by (seed, task, epoch, class), so a run and its resume draw the same ones.
 */
import type { Head } from "../../common/adapters.js";
import { type CounterRng, counterRng } from "../../common/data/counter_rng.js";
import { choleskyLower, NotPositiveDefiniteError } from "../linalg/cholesky.js";
import { gemm32 } from "../linalg/gemm32.js";
import { Sgd } from "../optim/optimizer.js";
import { learningRate } from "../optim/schedule.js";
import { alignmentLoss } from "./alignment_loss.js";

export interface ClassStatistics {
  readonly D: number;
  /** C = classes seen so far, rows in the run's class order. */
  readonly classes: number;
  /** [C, D]. */
  readonly means: Float64Array;
  /** [C, D, D], already including the +1e-4·I. */
  readonly covs: Float32Array;
}

export interface AlignmentOptions {
  /** t > 0 (alignment never runs after task 0). */
  readonly task: number;
  /** Classes in task t: the official task of class c is c // latestTaskSize. */
  readonly latestTaskSize: number;
  readonly seed: number;
  /** τ of the logit normalisation (0.1), or null for plain cross-entropy. */
  readonly logitNorm: number | null;
  readonly epochs?: number;
  readonly samplesPerClass?: number;
  readonly batchSize?: number;
  readonly lr?: number;
  readonly momentum?: number;
  readonly weightDecay?: number;
  readonly onEpoch?: (e: { epoch: number; epochs: number; loss: number }) => void;
}

export interface AlignmentResult {
  readonly heads: Head[];
  /** Mean batch loss of each epoch (the official log's figure). */
  readonly epochLoss: number[];
}

/** The official `_stage2_compact_classifier`'s constants. */
export const ALIGNMENT_DEFAULTS = {
  epochs: 5,
  samplesPerClass: 256,
  batchSize: 256,
  lr: 0.01,
  momentum: 0.9,
  weightDecay: 5e-4,
} as const;

/** Stream tags: alignment's draws never coincide with other users of counterRng. */
const SAMPLE_STREAM = 0x414c_4e53; // "ALNS"
const SHUFFLE_STREAM = 0x414c_4e50; // "ALNP"

const TWO32 = 4294967296;

/**
 * The factor on class c's mean, written as the official code writes it: 0.9 + (t_c+1)/(t+1)·0.1 with
 * t_c = c // latestTaskSize (equal task sizes assumed; the current task's classes get exactly 1).
 */
export function meanFactor(c: number, task: number, latestTaskSize: number): number {
  const tc = Math.floor(c / latestTaskSize);
  return 0.9 + ((tc + 1) / (task + 1)) * 0.1;
}

/**
 * Standard normals by Box–Muller, two per pair of uint32 uniforms: u1 = (x + ½)/2³² lies in (0, 1), so
 * the logarithm is finite; the largest |z| is √(2·ln 2³³) ≈ 6.8, beyond float32 features' needs.
 */
export function fillStandardNormal(rng: CounterRng, out: Float32Array): void {
  for (let i = 0; i < out.length; i += 2) {
    const u1 = (rng.nextUint32() + 0.5) / TWO32;
    const u2 = rng.nextUint32() / TWO32;
    const r = Math.sqrt(-2 * Math.log(u1));
    const a = 2 * Math.PI * u2;
    out[i] = r * Math.cos(a);
    if (i + 1 < out.length) out[i + 1] = r * Math.sin(a);
  }
}

/** A class's Gaussian as sampling needs it: its scaled mean and Cholesky factor, float32. */
export interface ClassSampler {
  readonly mean: Float32Array;
  /** L [D, D] row-major, Σ = L Lᵀ. */
  readonly L: Float32Array;
}

/** μ_c·f_c (in float64, then rounded as the official `.float()`) and the factor of Σ_c in float64. */
export function classSampler(stats: ClassStatistics, c: number, factor: number): ClassSampler {
  const { D } = stats;
  const mean = new Float32Array(D);
  for (let j = 0; j < D; j++) {
    const m = stats.means[c * D + j];
    if (!Number.isFinite(m)) throw new Error(`class statistics: class ${c}: mean[${j}] is ${m}`);
    mean[j] = m * factor;
  }
  const cov = stats.covs.subarray(c * D * D, (c + 1) * D * D);
  for (let k = 0; k < cov.length; k++) {
    if (!Number.isFinite(cov[k]))
      throw new Error(
        `class statistics: class ${c}: covariance[${Math.floor(k / D)}, ${k % D}] is ${cov[k]}`,
      );
  }
  try {
    return { mean, L: Float32Array.from(choleskyLower(cov, D)) };
  } catch (err) {
    if (err instanceof NotPositiveDefiniteError)
      throw new Error(`class statistics: class ${c}: covariance is ${err.message}`);
    throw err;
  }
}

/** `n` samples of a class into `out` [n, D]: x = μ + L z, z from the stream `rng`. */
export function drawSamples(s: ClassSampler, rng: CounterRng, n: number, out: Float32Array): void {
  const D = s.mean.length;
  const z = new Float32Array(n * D);
  fillStandardNormal(rng, z);
  // Rows: x_i = L z_i, i.e. X = Z Lᵀ.
  gemm32(z, s.L, out, n, D, D, false, true);
  for (let i = 0; i < n; i++) for (let j = 0; j < D; j++) out[i * D + j] += s.mean[j];
}

/** A uniform permutation of 0..n−1 (Fisher–Yates) from `rng`. */
function shuffled(n: number, rng: CounterRng): Int32Array {
  const p = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.nextFloat() * (i + 1));
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}

function check(heads: readonly Head[], stats: ClassStatistics, o: AlignmentOptions): void {
  const { D, classes: C } = stats;
  const fail = (field: string, why: string): never => {
    throw new Error(`classifier alignment: ${field} ${why}`);
  };
  if (!Number.isInteger(D) || D <= 0) fail("stats.D", `must be a positive integer, got ${D}`);
  if (!Number.isInteger(C) || C <= 0) fail("stats.classes", `must be a positive integer, got ${C}`);
  if (stats.means.length !== C * D)
    fail("stats.means", `has ${stats.means.length} values, expected classes·D = ${C}·${D}`);
  if (stats.covs.length !== C * D * D)
    fail("stats.covs", `has ${stats.covs.length} values, expected classes·D·D = ${C}·${D}·${D}`);
  if (!Number.isInteger(o.task) || o.task <= 0) fail("task", `must be a positive integer, got ${o.task}`);
  if (heads.length !== o.task + 1)
    fail(
      "heads",
      `has ${heads.length} heads, alignment after task ${o.task} needs ${o.task + 1} (tasks 0..t)`,
    );
  heads.forEach((h, k) => {
    if (h.weight.length !== h.classes * D)
      fail(`heads[${k}].weight`, `has ${h.weight.length} values, expected ${h.classes}·${D}`);
    if (h.bias.length !== h.classes)
      fail(`heads[${k}].bias`, `has ${h.bias.length} values, expected ${h.classes}`);
  });
  const headClasses = heads.reduce((n, h) => n + h.classes, 0);
  if (headClasses !== C) fail("heads", `cover ${headClasses} classes but stats.classes is ${C}`);
  if (!Number.isInteger(o.latestTaskSize) || o.latestTaskSize <= 0)
    fail("latestTaskSize", `must be a positive integer, got ${o.latestTaskSize}`);
  if (o.logitNorm !== null && !(o.logitNorm > 0))
    fail("logitNorm", `must be positive or null, got ${o.logitNorm}`);
  for (const key of ["epochs", "samplesPerClass", "batchSize"] as const) {
    const v = o[key];
    if (v !== undefined && (!Number.isInteger(v) || v <= 0))
      fail(key, `must be a positive integer, got ${v}`);
  }
}

/** Lets the event loop run (metrics scrapes, heartbeats) between the long synchronous stretches. */
const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Retrains heads 0..t on sampled features and returns them (same count and sizes); the inputs are not
 * modified. Each epoch draws `samplesPerClass` samples per class, shuffles them and takes one SGD step per
 * batch (with the defaults, one step per class, as the official loop); the learning rate follows
 * CosineAnnealingLR(T_max = epochs), stepped once per epoch.
 */
export async function alignClassifier(
  heads: readonly Head[],
  stats: ClassStatistics,
  opts: AlignmentOptions,
): Promise<AlignmentResult> {
  check(heads, stats, opts);
  const { D, classes: C } = stats;
  const { task, seed, logitNorm } = opts;
  const epochs = opts.epochs ?? ALIGNMENT_DEFAULTS.epochs;
  const perClass = opts.samplesPerClass ?? ALIGNMENT_DEFAULTS.samplesPerClass;
  const batchSize = opts.batchSize ?? ALIGNMENT_DEFAULTS.batchSize;
  const baseLr = opts.lr ?? ALIGNMENT_DEFAULTS.lr;
  const sgd = new Sgd(
    opts.weightDecay ?? ALIGNMENT_DEFAULTS.weightDecay,
    opts.momentum ?? ALIGNMENT_DEFAULTS.momentum,
  );
  const taskSizes = heads.map((h) => h.classes);

  // One factorisation per class per call, reused by every epoch.
  const samplers: ClassSampler[] = [];
  for (let c = 0; c < C; c++) {
    samplers.push(classSampler(stats, c, meanFactor(c, task, opts.latestTaskSize)));
    if (c % 16 === 15) await yieldToLoop();
  }

  // Float64 masters of the concatenated heads, as the project's optimizers keep them.
  const W = new Float64Array(C * D);
  const b = new Float64Array(C);
  let row = 0;
  for (const h of heads) {
    W.set(h.weight, row * D);
    b.set(h.bias, row);
    row += h.classes;
  }

  const total = C * perClass;
  const X = new Float32Array(total * D);
  const W32 = new Float32Array(C * D);
  const epochLoss: number[] = [];
  for (let epoch = 0; epoch < epochs; epoch++) {
    for (let c = 0; c < C; c++) {
      const rng = counterRng(seed, SAMPLE_STREAM, task, epoch, c);
      drawSamples(samplers[c], rng, perClass, X.subarray(c * perClass * D, (c + 1) * perClass * D));
      if (c % 16 === 15) await yieldToLoop();
    }
    const order = shuffled(total, counterRng(seed, SHUFFLE_STREAM, task, epoch));
    const lr = learningRate("sgd", baseLr, epoch, epochs);
    let lossSum = 0;
    let steps = 0;
    for (let start = 0; start < total; start += batchSize) {
      const n = Math.min(batchSize, total - start);
      const xb = new Float32Array(n * D);
      const yb = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const s = order[start + i];
        xb.set(X.subarray(s * D, (s + 1) * D), i * D);
        yb[i] = Math.floor(s / perClass);
      }
      for (let k = 0; k < W.length; k++) W32[k] = W[k];
      const logits = new Float32Array(n * C);
      gemm32(xb, W32, logits, n, C, D, false, true);
      const g = new Float64Array(n * C);
      lossSum += alignmentLoss(logits, b, n, yb, taskSizes, logitNorm, g);
      steps++;
      const g32 = Float32Array.from(g);
      const dW32 = new Float32Array(C * D);
      gemm32(g32, xb, dW32, C, D, n, true, false);
      const db = new Float64Array(C);
      for (let i = 0; i < n; i++) for (let j = 0; j < C; j++) db[j] += g[i * C + j];
      sgd.step([W, b], [Float64Array.from(dW32), db], lr);
      if (steps % 16 === 0) await yieldToLoop();
    }
    const loss = lossSum / steps;
    if (!Number.isFinite(loss))
      throw new Error(`classifier alignment: task ${task} epoch ${epoch}: the loss is ${loss}`);
    epochLoss.push(loss);
    opts.onEpoch?.({ epoch, epochs, loss });
  }

  const out: Head[] = [];
  row = 0;
  for (const h of heads) {
    out.push({
      classes: h.classes,
      weight: Float32Array.from(W.subarray(row * D, (row + h.classes) * D)),
      bias: Float32Array.from(b.subarray(row, row + h.classes)),
    });
    row += h.classes;
  }
  return { heads: out, epochLoss };
}
