/**
 * The three workloads of the step benchmark, written as the worker runs them (worker/engine.ts): the
 * training step (lossAndGrads per micro-batch), the forward-only pass (evaluation) and the covariance pass.
 * Used by the measuring child (step_child.ts) and the profiler (step_profile.ts).
 */
import * as tf from "@tensorflow/tfjs-core";
import type { AdapterSet } from "../common/adapters.js";
import { gridSize, type VitConfig } from "../common/vit_config.js";
import { covarianceSum } from "../worker/model/covariance.js";
import { imagesToPatches } from "../worker/model/layers.js";
import { lossAndGrads, type Trainables } from "../worker/model/objective.js";
import { InfLoraVit } from "../worker/model/vit.js";
import { benchWeights, type ModelSpec, randomNormal, randomUniform, type Workload } from "./step_spec.js";

export interface MicroBatch {
  readonly patches: Float32Array;
  readonly count: number;
  readonly targets: Int32Array;
}

export interface BenchModel {
  readonly spec: ModelSpec;
  readonly cfg: VitConfig;
  readonly model: InfLoraVit;
  /** The live adapter's Bᵀ per block, [D, r]. */
  readonly BT: tf.Tensor2D[];
  readonly trainables: Trainables;
  /** One global batch of images (CHW, [0, 1)) and its targets. */
  readonly images: Float32Array;
  readonly targets: Int32Array;
}

/**
 * The model as at task 1: random base weights, one finished adapter folded into k/v, a live adapter
 * (B designed, A being trained) and a head. B as the design makes it (orthonormal rows / √3) has entries
 * of about 1/√(3D); A is small, as after training from zero.
 */
export async function buildBenchModel(spec: ModelSpec): Promise<BenchModel> {
  const { cfg, rank: r } = spec;
  const D = cfg.embedDim;
  const model = new InfLoraVit(cfg, benchWeights(cfg, 1000));
  const bStd = 1 / Math.sqrt(3 * D);
  const perBlock = (seed: number, std: number) =>
    Array.from({ length: cfg.depth }, (_, i) => randomNormal(D * r, seed + i, std));
  const B = perBlock(2000, bStd);
  const finished: AdapterSet = {
    rank: r,
    Bk: B,
    Bv: B,
    Ak: perBlock(3000, 0.02),
    Av: perBlock(4000, 0.02),
  };
  await model.setFinishedAdapters([finished]);
  const tensors = (seed: number, std: number, shape: [number, number]) =>
    Array.from({ length: cfg.depth }, (_, i) => tf.tensor2d(randomNormal(D * r, seed + i, std), shape));
  const trainables: Trainables = {
    AkT: tensors(6000, 0.02, [r, D]),
    AvT: tensors(7000, 0.02, [r, D]),
    headW: tf.tensor2d(randomNormal(spec.classes * D, 8000, 1 / Math.sqrt(D)), [spec.classes, D]),
    headB: tf.zeros([spec.classes]),
  };
  const images = randomUniform(spec.batch * cfg.inChans * cfg.imgSize * cfg.imgSize, 9000);
  const targets = Int32Array.from(randomUniform(spec.batch, 9001), (u) => Math.floor(u * spec.classes));
  return { spec, cfg, model, BT: tensors(5000, bStd, [D, r]), trainables, images, targets };
}

/** The first `images` images of the global batch cut into micro-batches of `size` (the last one short). */
export function microBatches(m: BenchModel, images: number, size: number): MicroBatch[] {
  const { cfg } = m;
  const perImage = cfg.inChans * cfg.imgSize * cfg.imgSize;
  const out: MicroBatch[] = [];
  for (let start = 0; start < images; start += size) {
    const count = Math.min(size, images - start);
    const slice = m.images.subarray(start * perImage, (start + count) * perImage);
    out.push({
      patches: imagesToPatches(slice, count, cfg.inChans, cfg.imgSize, cfg.patchSize),
      count,
      targets: m.targets.slice(start, start + count),
    });
  }
  return out;
}

/** Training step: lossAndGrads per micro-batch, gradients summed in float64 as the coordinator does. */
export async function trainStep(m: BenchModel, mbs: readonly MicroBatch[]): Promise<number> {
  const { cfg, trainables } = m;
  const zeros = (t: tf.Tensor) => new Float64Array(t.size);
  const sums = {
    Ak: trainables.AkT.map(zeros),
    Av: trainables.AvT.map(zeros),
    headW: zeros(trainables.headW),
    headB: zeros(trainables.headB),
  };
  const add = (acc: Float64Array, g: Float32Array) => {
    for (let i = 0; i < acc.length; i++) acc[i] += g[i];
  };
  let loss = 0;
  for (const mb of mbs) {
    const out = await lossAndGrads(m.model, mb.patches, mb.count, mb.targets, m.BT, trainables);
    loss += out.lossSum;
    for (let i = 0; i < cfg.depth; i++) {
      add(sums.Ak[i], out.gradAk[i]);
      add(sums.Av[i], out.gradAv[i]);
    }
    add(sums.headW, out.gradHeadW);
    add(sums.headB, out.gradHeadB);
  }
  if (!Number.isFinite(loss)) throw new Error(`training step produced a non-finite loss (${loss})`);
  return loss;
}

function patchRows(m: BenchModel, mb: MicroBatch): tf.Tensor2D {
  const { cfg } = m;
  return tf.tensor2d(mb.patches, [mb.count * gridSize(cfg) ** 2, cfg.inChans * cfg.patchSize ** 2]);
}

/** Forward only, as the worker evaluates: features (finished adapters folded) and head logits. */
export async function forwardStep(m: BenchModel, mbs: readonly MicroBatch[]): Promise<number> {
  const { trainables } = m;
  let check = 0;
  for (const mb of mbs) {
    const logits = tf.tidy(() =>
      tf.add(
        tf.matMul(m.model.features(patchRows(m, mb), mb.count), trainables.headW, false, true),
        trainables.headB,
      ),
    );
    // Asynchronous reads throughout: webgpu has no synchronous readback.
    check += (await logits.data())[0];
    logits.dispose();
  }
  return check;
}

/**
 * Covariance pass, as the worker runs it: per block hᵀh of the attention input (covarianceSum), stacked
 * and read back once per micro-batch, summed in float64.
 */
export async function covarianceStep(m: BenchModel, mbs: readonly MicroBatch[]): Promise<number> {
  const { cfg } = m;
  const D = cfg.embedDim;
  const acc = Array.from({ length: cfg.depth }, () => new Float64Array(D * D));
  for (const mb of mbs) {
    const stacked = tf.tidy(() => {
      const out: tf.Tensor2D[] = new Array(cfg.depth);
      m.model.features(patchRows(m, mb), mb.count, {
        collect: (i, h) => {
          out[i] = covarianceSum(h);
        },
      });
      return tf.stack(out);
    });
    const v = await stacked.data();
    stacked.dispose();
    acc.forEach((a, i) => {
      for (let j = 0; j < a.length; j++) a[j] += v[i * D * D + j];
    });
  }
  return acc[0][0];
}

export const STEPS: Record<Workload, (m: BenchModel, mbs: readonly MicroBatch[]) => Promise<number>> = {
  train: trainStep,
  forward: forwardStep,
  covariance: covarianceStep,
};
