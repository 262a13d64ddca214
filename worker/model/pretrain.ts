/**
 * Full-model supervised training of a small ViT in timm's layout (every tensor trainable), for the demo's
 * backbone: it stands in for ImageNet-21k pretraining, which a laptop cannot redo. The forward pass is the
 * same computation as `InfLoraVit.features` (pre-LN blocks, exact GELU, class token, final norm) but over
 * `tf.Variable`s, because the adapter model's frozen layers deliberately compute no weight gradients.
 */
import * as tf from "@tensorflow/tfjs-core";
import { counterRng } from "../../common/data/counter_rng.js";
import { expectedShapes, gridSize, numTokens, type VitConfig } from "../../common/vit_config.js";
import { gelu, imagesToPatches, layerNorm } from "./layers.js";
import type { HostTensor } from "./vit.js";

/** Images n × 3 × S × S (CHW, as the data loader returns them) and their labels. */
export interface LabelledImages {
  readonly images: Float32Array;
  readonly labels: Int32Array;
}

export interface PretrainStep {
  readonly epoch: number;
  readonly step: number;
  readonly steps: number;
  readonly loss: number;
}

export interface PretrainEpoch {
  readonly epoch: number;
  readonly epochs: number;
  readonly lr: number;
  readonly loss: number;
  readonly trainAccuracy: number;
  readonly seconds: number;
}

export interface PretrainOptions {
  readonly cfg: VitConfig;
  readonly classes: number;
  readonly epochs: number;
  readonly batchSize: number;
  /** Peak Adam learning rate: linear warm-up over the first epoch, then cosine decay to 0. */
  readonly lr: number;
  /** L2 penalty added to the gradient of matrices (not of norms, biases or embeddings). */
  readonly weightDecay: number;
  readonly labelSmoothing: number;
  readonly seed: number;
  /** Random horizontal flips of the training images (a cheap augmentation that suits clothing). */
  readonly flip: boolean;
  readonly onStep?: (info: PretrainStep) => void;
  readonly onEpoch?: (info: PretrainEpoch) => void;
}

const INIT_STREAM = 0x5052_4554; // "PRET"
const ORDER_STREAM = 0x4f52_4452; // "ORDR"
const FLIP_STREAM = 0x464c_4950; // "FLIP"

/** timm's ViT init: truncated normal (σ 0.02) for weights and embeddings, zero biases, unit norm scales. */
export function initialWeights(cfg: VitConfig, classes: number, seed: number): Map<string, HostTensor> {
  const rng = counterRng(seed, INIT_STREAM);
  const gauss = () => {
    // Box–Muller, resampled beyond 2σ: trunc_normal_(std=0.02, a=-2σ, b=2σ) up to the tail rule.
    for (;;) {
      const u = 1 - rng.nextFloat();
      const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.nextFloat());
      if (Math.abs(z) <= 2) return z;
    }
  };
  const shapes = new Map(expectedShapes(cfg));
  shapes.set("head.weight", [classes, cfg.embedDim]);
  shapes.set("head.bias", [classes]);
  const out = new Map<string, HostTensor>();
  for (const [name, shape] of shapes) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (/norm\d?\.weight$/.test(name)) data.fill(1);
    else if (!name.endsWith(".bias")) for (let i = 0; i < data.length; i++) data[i] = 0.02 * gauss();
    out.set(name, { shape, data });
  }
  return out;
}

/**
 * y = x Wᵀ + b whose forward and backward passes are plain 2-D matmuls with explicit transposes: the wasm
 * backend runs `matMul` with a transpose flag 10–40× slower than without, and tfjs's own matMul gradient
 * uses those flags.
 */
const dense = tf.customGrad(((x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D, save: tf.GradSaveFunc) => {
  save([x, w]);
  return {
    value: tf.add(tf.matMul(x, tf.transpose(w)), b),
    gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
      const [xs, ws] = saved as tf.Tensor2D[];
      return [tf.matMul(dy, ws), tf.matMul(tf.transpose(dy), xs), tf.sum(dy, 0)];
    },
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (
  x: tf.Tensor2D,
  w: tf.Tensor2D,
  b: tf.Tensor1D,
) => tf.Tensor2D;

/** The trainable model: one variable per timm tensor (the patch conv kept flat as [D, C·p·p]). */
class TrainableVit {
  readonly vars = new Map<string, tf.Variable>();

  constructor(
    readonly cfg: VitConfig,
    weights: ReadonlyMap<string, HostTensor>,
  ) {
    for (const [name, t] of weights) {
      const shape = name === "patch_embed.proj.weight" ? [t.shape[0], t.data.length / t.shape[0]] : t.shape;
      const initial = tf.tensor(t.data, [...shape]);
      this.vars.set(name, tf.variable(initial, true, `pretrain/${name}`));
      initial.dispose(); // the variable holds its own reference to the data
    }
  }

  private v<R extends tf.Rank>(name: string): tf.Tensor<R> {
    const t = this.vars.get(name);
    if (!t) throw new Error(`pretrain: no variable ${name}`);
    return t as unknown as tf.Tensor<R>;
  }

  /** Patch rows [B·P, C·p·p] → logits [B, classes]. */
  logits(patches: tf.Tensor2D, batch: number): tf.Tensor2D {
    const { cfg } = this;
    const D = cfg.embedDim;
    const N = numTokens(cfg);
    const P = gridSize(cfg) ** 2;
    const H = cfg.numHeads;
    const Dh = D / H;
    const linear = (x: tf.Tensor2D, prefix: string) =>
      dense(x, this.v<tf.Rank.R2>(`${prefix}.weight`), this.v<tf.Rank.R1>(`${prefix}.bias`));
    const embedded = tf.reshape(linear(patches, "patch_embed.proj"), [batch, P, D]);
    const cls = tf.tile(this.v<tf.Rank.R3>("cls_token"), [batch, 1, 1]);
    let x = tf.reshape(tf.add(tf.concat([cls, embedded], 1), this.v("pos_embed")), [
      batch * N,
      D,
    ]) as tf.Tensor2D;
    const heads = (t: tf.Tensor) =>
      tf.transpose(tf.reshape(t, [batch, N, H, Dh]), [0, 2, 1, 3]) as tf.Tensor4D;
    for (let i = 0; i < cfg.depth; i++) {
      const p = `blocks.${i}.`;
      const h = layerNorm(x, this.v(`${p}norm1.weight`), this.v(`${p}norm1.bias`));
      const qkv = linear(h, `${p}attn.qkv`);
      const [q, k, v] = tf.split(qkv, 3, 1);
      const scores = tf.matMul(tf.mul(heads(q), Dh ** -0.5), heads(k), false, true);
      const att = tf.matMul(tf.softmax(scores), heads(v));
      const merged = tf.reshape(tf.transpose(att, [0, 2, 1, 3]), [batch * N, D]) as tf.Tensor2D;
      x = tf.add(x, linear(merged, `${p}attn.proj`));
      const h2 = layerNorm(x, this.v(`${p}norm2.weight`), this.v(`${p}norm2.bias`));
      x = tf.add(x, linear(gelu(linear(h2, `${p}mlp.fc1`)) as tf.Tensor2D, `${p}mlp.fc2`));
    }
    const clsOut = tf.reshape(tf.slice(tf.reshape(x, [batch, N, D]), [0, 0, 0], [batch, 1, D]), [batch, D]);
    const feats = layerNorm(clsOut as tf.Tensor2D, this.v("norm.weight"), this.v("norm.bias"));
    return linear(feats, "head");
  }

  /** Host copies under timm names and shapes (the patch conv back to [D, C, p, p]). */
  export(): Map<string, HostTensor> {
    const { cfg } = this;
    const out = new Map<string, HostTensor>();
    for (const [name, t] of this.vars) {
      const shape =
        name === "patch_embed.proj.weight"
          ? [cfg.embedDim, cfg.inChans, cfg.patchSize, cfg.patchSize]
          : [...t.shape];
      out.set(name, { shape, data: Float32Array.from(t.dataSync() as Float32Array) });
    }
    return out;
  }

  dispose(): void {
    for (const t of this.vars.values()) t.dispose();
  }
}

/** Weight matrices get the L2 penalty; vectors (biases, norm scales) and embeddings do not. */
function decays(name: string): boolean {
  return name.endsWith(".weight") && !/norm\d?\.weight$/.test(name) && name !== "patch_embed.proj.weight";
}

function flipInPlace(
  images: Float32Array,
  count: number,
  size: number,
  chosen: (n: number) => boolean,
): void {
  const plane = size * size;
  for (let n = 0; n < count; n++) {
    if (!chosen(n)) continue;
    for (let c = 0; c < 3; c++) {
      const base = (n * 3 + c) * plane;
      for (let y = 0; y < size; y++) images.subarray(base + y * size, base + (y + 1) * size).reverse();
    }
  }
}

function learningRate(peak: number, step: number, warmup: number, total: number): number {
  if (step < warmup) return (peak * (step + 1)) / warmup;
  return (peak * (1 + Math.cos((Math.PI * (step - warmup)) / Math.max(1, total - warmup)))) / 2;
}

/** Trains every tensor of a fresh ViT on `train`; returns the weights under timm names (with `head.*`). */
export async function pretrainVit(
  train: LabelledImages,
  opts: PretrainOptions,
): Promise<Map<string, HostTensor>> {
  const { cfg, batchSize } = opts;
  const S = cfg.imgSize;
  const imageFloats = 3 * S * S;
  const count = train.labels.length;
  if (train.images.length !== count * imageFloats) {
    throw new Error(`pretrain: ${train.images.length} floats for ${count} images of 3×${S}×${S}`);
  }
  const model = new TrainableVit(cfg, initialWeights(cfg, opts.classes, opts.seed));
  const optimizer = tf.train.adam(opts.lr, 0.9, 0.999, 1e-8);
  const stepsPerEpoch = Math.ceil(count / batchSize);
  const totalSteps = stepsPerEpoch * opts.epochs;
  const patchRows = gridSize(cfg) ** 2;
  const rowLen = cfg.inChans * cfg.patchSize * cfg.patchSize;
  const varList = [...model.vars.values()];
  const decayed = [...model.vars].filter(([name]) => decays(name)).map(([, v]) => v);
  let globalStep = 0;
  try {
    for (let epoch = 0; epoch < opts.epochs; epoch++) {
      const started = performance.now();
      const order = shuffled(count, counterRng(opts.seed, ORDER_STREAM, epoch));
      const flips = counterRng(opts.seed, FLIP_STREAM, epoch);
      let lossSum = 0;
      let correct = 0;
      let lr = opts.lr;
      for (let step = 0; step < stepsPerEpoch; step++) {
        const idx = order.slice(step * batchSize, (step + 1) * batchSize);
        const n = idx.length;
        const images = new Float32Array(n * imageFloats);
        idx.forEach((s, j) => {
          images.set(train.images.subarray(s * imageFloats, (s + 1) * imageFloats), j * imageFloats);
        });
        if (opts.flip) flipInPlace(images, n, S, () => flips.nextFloat() < 0.5);
        const targets = Int32Array.from(idx, (s) => train.labels[s]);
        lr = learningRate(opts.lr, globalStep, stepsPerEpoch, totalSteps);
        // tfjs optimizers have no public learning-rate setter; Adam reads this field on every step.
        (optimizer as unknown as { learningRate: number }).learningRate = lr;
        const { loss, hits } = tf.tidy(() => {
          const x = tf.tensor2d(imagesToPatches(images, n, cfg.inChans, S, cfg.patchSize), [
            n * patchRows,
            rowLen,
          ]);
          const y = tf.oneHot(tf.tensor1d(targets, "int32"), opts.classes);
          const smooth = tf.add(tf.mul(y, 1 - opts.labelSmoothing), opts.labelSmoothing / opts.classes);
          let kept: tf.Tensor2D | undefined;
          const cost = optimizer.minimize(
            () => {
              const logits = model.logits(x, n);
              // The gradient scope disposes its intermediates; the logits are needed after it for accuracy.
              kept = tf.keep(logits);
              let l = tf.neg(tf.mean(tf.sum(tf.mul(tf.logSoftmax(logits), smooth), 1))) as tf.Scalar;
              if (opts.weightDecay > 0) {
                const l2 = tf.addN(decayed.map((w) => tf.sum(tf.square(w))));
                l = tf.add(l, tf.mul(l2, opts.weightDecay / 2));
              }
              return l;
            },
            true,
            varList,
          ) as tf.Scalar;
          const right = tf.sum(
            tf.cast(tf.equal(tf.argMax(kept!, 1), tf.tensor1d(targets, "int32")), "int32"),
          );
          kept!.dispose();
          return { loss: cost, hits: right };
        });
        const batchLoss = (await loss.data())[0];
        correct += (await hits.data())[0];
        tf.dispose([loss, hits]);
        if (!Number.isFinite(batchLoss))
          throw new Error(`pretrain: epoch ${epoch} step ${step}: loss ${batchLoss}`);
        lossSum += batchLoss * n;
        globalStep++;
        opts.onStep?.({ epoch, step, steps: stepsPerEpoch, loss: batchLoss });
      }
      opts.onEpoch?.({
        epoch,
        epochs: opts.epochs,
        lr,
        loss: lossSum / count,
        trainAccuracy: (100 * correct) / count,
        seconds: (performance.now() - started) / 1000,
      });
    }
    return model.export();
  } finally {
    optimizer.dispose();
    model.dispose();
  }
}

/** Fisher–Yates over 0..n-1 from a seeded stream. */
function shuffled(n: number, rng: { nextFloat(): number }): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.nextFloat() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}
