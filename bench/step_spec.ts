/**
 * What the step benchmark measures: the models, workloads and micro-batch sizes, the PyTorch reference
 * numbers, the message format between the benchmark and its child processes, and the random weights.
 * Imports no tfjs, so the parent process never initialises a backend.
 */

import { expectedShapes, VIT_PRESETS, type VitConfig } from "../common/vit_config.js";
import { BACKEND_NAMES } from "../worker/backend_names.js";
import type { HostTensor } from "../worker/model/vit.js";

/** The bench's backends: the worker's. */
export const BENCH_BACKENDS: readonly string[] = BACKEND_NAMES;

export const WORKLOADS = ["forward", "covariance", "train"] as const;
export type Workload = (typeof WORKLOADS)[number];

export const WORKLOAD_LABELS: Record<Workload, string> = {
  train: "training step",
  forward: "forward only",
  covariance: "covariance pass",
};

export const PYTORCH_LABEL = "PyTorch 1.13 CPU, 2 threads, measured on a machine like ours";

export interface ModelSpec {
  readonly id: string;
  readonly title: string;
  readonly cfg: VitConfig;
  /** Global batch of one step. */
  readonly batch: number;
  /** InfLoRA rank of the live and the finished adapter. */
  readonly rank: number;
  readonly classes: number;
  /** Micro-batch sizes tried on the wasm backend (global batch cut into micro-batches, gradients summed). */
  readonly microBatches: readonly number[];
  /**
   * Warm-up: one untimed micro-batch of min(this, the timed micro-batch) images before each workload. It
   * packs the weights for XNNPACK and warms the JIT; a full-size warm-up of a ViT-B/16 step would cost
   * half a minute per configuration.
   */
  readonly warmupMicroBatch: number;
  /** PyTorch images/s of the training step at `batch` (see PYTORCH_LABEL). */
  readonly pytorchTrainImagesPerSec: number;
}

export const MODELS: readonly ModelSpec[] = [
  {
    id: "fixture",
    title: "fixture-size ViT (32×32, patch 4, D 48, depth 3, 3 heads, MLP 192), batch 64",
    cfg: { imgSize: 32, patchSize: 4, inChans: 3, embedDim: 48, depth: 3, numHeads: 3, mlpHidden: 192 },
    batch: 64,
    rank: 4,
    classes: 10,
    microBatches: [16, 32, 64],
    warmupMicroBatch: 64,
    pytorchTrainImagesPerSec: 448,
  },
  {
    id: "vit_ti16",
    title: "ViT-Ti/16 (224×224, D 192, depth 12, 3 heads), batch 16",
    cfg: VIT_PRESETS.vit_tiny_patch16_224,
    batch: 16,
    rank: 10,
    classes: 10,
    microBatches: [1, 2, 4, 8, 16],
    warmupMicroBatch: 4,
    pytorchTrainImagesPerSec: 8.85,
  },
  {
    id: "vit_b16",
    title: "ViT-B/16 (224×224, D 768, depth 12, 12 heads), batch 8",
    cfg: VIT_PRESETS.vit_base_patch16_224,
    batch: 8,
    rank: 10,
    classes: 10,
    microBatches: [1, 2, 4, 8],
    warmupMicroBatch: 1,
    pytorchTrainImagesPerSec: 0.87,
  },
];

export function modelById(id: string): ModelSpec {
  const m = MODELS.find((x) => x.id === id);
  if (!m)
    throw new Error(`unknown benchmark model "${id}"; expected one of ${MODELS.map((x) => x.id).join(", ")}`);
  return m;
}

/**
 * One child process: one backend, one model, one micro-batch size; the workloads run one after the other
 * in the given order (building a ViT-B/16 takes several seconds, so a process serves all three).
 */
export interface ChildJob {
  readonly backend: string;
  readonly model: string;
  readonly workloads: readonly Workload[];
  readonly microBatch: number;
  /** Warm-up before each workload's timed steps: this many untimed micro-batches of `warmupMicroBatch` images. */
  readonly warmupMicroBatches: number;
  readonly warmupMicroBatch: number;
  /** Timed steps: at least `minSteps`, then more until `minSeconds` have passed, at most `maxSteps`. */
  readonly minSteps: number;
  readonly minSeconds: number;
  readonly maxSteps: number;
  /** false: our fused WGSL kernels unregistered (webgpu: the op chains; dispatch counts before fusion). */
  readonly fusedKernels?: boolean;
  /** The global batch, when not the model's own (ModelSpec.batch). */
  readonly batch?: number;
}

/** Only the backend is started and described; no model is built. */
export interface ChildProbe {
  readonly backend: string;
  readonly probe: true;
}

/** What one step costs the backend beyond arithmetic (worker/backend_counters.ts), counted over one step. */
export interface StepCounts {
  /** Kernel calls through the tfjs engine. */
  readonly kernels: number;
  /** GPU programs dispatched (webgpu; 0 elsewhere). */
  readonly dispatches: number;
  /** Host readbacks (the backend's read/readSync). */
  readonly readbacks: number;
}

export interface BackendReport {
  readonly backend: string;
  readonly available: boolean;
  readonly tfBackend?: string;
  readonly device?: string;
  readonly reason?: string;
}

export interface Measurement {
  readonly imagesPerSec: number;
  readonly timedSteps: number;
  readonly timedSeconds: number;
  /**
   * CPU time (user + system, all threads) the child spent over the timed steps. Both backends compute on
   * one thread in Node, so timedCpuSeconds / timedSeconds ≈ 1 means the process had a core to itself;
   * well below 1, it was waiting for a core (other processes on the machine).
   */
  readonly timedCpuSeconds: number;
  readonly stepSeconds: readonly number[];
  readonly warmupSeconds: number;
  readonly numTensorsBefore: number;
  readonly numTensorsAfter: number;
  /**
   * Peak RSS of the child process (`process.resourceUsage().maxRSS`) at the end of this workload: it
   * includes model setup and the workloads run before it in the same process.
   */
  readonly peakRssMiB: number;
  /** RSS right after the model was built and the host copy of the weights dropped. */
  readonly setupRssMiB: number;
  readonly setupSeconds: number;
  /** Bytes tfjs reports in use after the timed steps (wasm: the heap in use, not its high-water mark). */
  readonly tfBytesInUse: number;
  /** Counted over one more step after the timed ones (the counting is not timed). */
  readonly perStep: StepCounts;
  /** blas: the float32 operations the addon's sgemm did per timed step (for the step's achieved GFLOP/s). */
  readonly sgemmFlopsPerStep?: number;
}

/** Lines a child writes to stdout, each prefixed with CHILD_TAG. */
export type ChildMessage =
  | { readonly kind: "backend"; readonly report: BackendReport }
  | { readonly kind: "start"; readonly workload: Workload }
  | { readonly kind: "result"; readonly workload: Workload; readonly measurement: Measurement }
  | { readonly kind: "error"; readonly workload?: Workload; readonly message: string };

export const CHILD_TAG = "@@bench-step ";

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Seeded N(0, std²) samples (Box–Muller). */
export function randomNormal(n: number, seed: number, std: number): Float32Array {
  const rnd = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - rnd())) * std;
    const phi = 2 * Math.PI * rnd();
    out[i] = r * Math.cos(phi);
    if (i + 1 < n) out[i + 1] = r * Math.sin(phi);
  }
  return out;
}

/** Seeded U[0, 1) samples. */
export function randomUniform(n: number, seed: number): Float32Array {
  const rnd = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rnd();
  return out;
}

/**
 * timm-layout weights: N(0, 0.02²) everywhere, LayerNorm weights 1 and biases 0. Values are drawn from
 * a fixed pool of normal samples at random offsets and odd strides (a speed benchmark does not need
 * independent samples, and Box–Muller for ViT-B/16's 86 M values takes seconds per process).
 */
export function benchWeights(cfg: VitConfig, seed: number): Map<string, HostTensor> {
  const poolBits = 20;
  const mask = (1 << poolBits) - 1;
  const pool = randomNormal(1 << poolBits, seed, 0.02);
  const rnd = mulberry32(seed + 1);
  const out = new Map<string, HostTensor>();
  for (const [name, shape] of expectedShapes(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (/(^|\.)norm\d?\.weight$/.test(name)) data.fill(1);
    else if (!/(^|\.)norm\d?\.bias$/.test(name)) {
      let j = Math.floor(rnd() * (mask + 1));
      const stride = 2 * Math.floor(rnd() * 1000) + 1;
      for (let i = 0; i < n; i++) {
        data[i] = pool[j];
        j = (j + stride) & mask;
      }
    }
    out.set(name, { shape, data });
  }
  return out;
}
