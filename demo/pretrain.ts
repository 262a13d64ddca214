/**
 * Full-model supervised training of a small ViT in timm's layout (every tensor trainable), for the demo's
 * backbone: it stands in for ImageNet-21k pretraining, which a laptop cannot redo. The forward pass is the
 * model's own (`vitFeatures`, worker/model/vit.ts); the gradients come from tfjs's autodiff through it,
 * because the model's hand-written backward pass computes none for its frozen weights.
 */
import * as tf from "@tensorflow/tfjs-core";
import { counterRng } from "../common/data/counter_rng.js";
import { expectedShapes, gridSize, numTokens, type VitConfig } from "../common/vit_config.js";
import type { KeyValue, QueryProj } from "../worker/model/attention.js";
import type { KeyValueHead, QueryProjHead } from "../worker/model/attention_per_head.js";
import type { BlockWeights } from "../worker/model/block.js";
import { FrozenLinear, imagesToPatches } from "../worker/model/layers.js";
import { type ComputePolicy, defaultPolicy } from "../worker/model/policy.js";
import { type HostTensor, type VitTensors, vitFeatures } from "../worker/model/vit.js";

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
 * A linear layer whose weight trains: its value is the model's own (FrozenLinear.forward, with Wᵀ kept
 * where the model keeps it); its gradients are plain 2-D matmuls with explicit transposes, because tfjs's
 * gradient of a fused matmul uses transpose flags, which the wasm backend runs far slower.
 */
class TrainableLinear extends FrozenLinear {
  constructor(w: tf.Tensor2D, b: tf.Tensor1D) {
    super(w, b, tf.getBackend() === "wasm" ? (tf.transpose(w) as tf.Tensor2D) : null);
  }

  override forward(x: tf.Tensor2D): tf.Tensor2D {
    const op = tf.customGrad(((xs: tf.Tensor2D, w: tf.Tensor2D, _b: tf.Tensor1D, save: tf.GradSaveFunc) => {
      save([xs, w]);
      return {
        value: super.forward(xs),
        gradFunc: (dy: tf.Tensor2D, [xSaved, wSaved]: tf.Tensor2D[]) => [
          tf.matMul(dy, wSaved),
          tf.matMul(tf.transpose(dy), xSaved),
          tf.sum(dy, 0),
        ],
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (
      x: tf.Tensor2D,
      w: tf.Tensor2D,
      b: tf.Tensor1D,
    ) => tf.Tensor2D;
    return op(x, this.w, this.b);
  }
}

/**
 * The trainable model: one variable per timm tensor, in timm's shape. Every step derives the layouts the
 * model's forward pass multiplies with from them by differentiable ops, so tfjs's autodiff reaches every
 * variable through that forward.
 */
class TrainableVit {
  readonly vars = new Map<string, tf.Variable>();
  /** The per-image path reads activations back to the host, which autodiff cannot follow. */
  private readonly policy: ComputePolicy;

  constructor(
    readonly cfg: VitConfig,
    weights: ReadonlyMap<string, HostTensor>,
  ) {
    this.policy = { ...defaultPolicy(cfg), perImage: false };
    for (const [name, t] of weights) {
      const initial = tf.tensor(t.data, [...t.shape]);
      this.vars.set(name, tf.variable(initial, true, `pretrain/${name}`));
      initial.dispose(); // the variable holds its own reference to the data
    }
  }

  private v<T extends tf.Tensor>(name: string): T {
    const t = this.vars.get(name);
    if (!t) throw new Error(`pretrain: no variable ${name}`);
    return t as unknown as T;
  }

  /** y = x Wᵀ + b over `${prefix}.weight` (as [out, in]) and `${prefix}.bias`. */
  private linear(prefix: string): FrozenLinear {
    const w = this.v<tf.Tensor>(`${prefix}.weight`);
    const flat = tf.reshape(w, [w.shape[0], w.size / w.shape[0]]) as tf.Tensor2D;
    return new TrainableLinear(flat, this.v(`${prefix}.bias`));
  }

  /**
   * Block i's attention weights in head_weights.ts's layouts (the policy's), from the qkv and proj
   * variables: differentiable slices, so autodiff reaches the variables.
   */
  private attention(i: number): { attn: QueryProj; kv: KeyValue } {
    const D = this.cfg.embedDim;
    const H = this.cfg.numHeads;
    const dh = D / H;
    const scale = dh ** -0.5;
    const qkvW = this.v<tf.Tensor2D>(`blocks.${i}.attn.qkv.weight`);
    const qkvB = this.v<tf.Tensor1D>(`blocks.${i}.attn.qkv.bias`);
    const projW = this.v<tf.Tensor2D>(`blocks.${i}.attn.proj.weight`);
    const projBias = this.v<tf.Tensor1D>(`blocks.${i}.attn.proj.bias`);
    if (this.policy.jointHeads) {
      const part = (j: number) => tf.slice(qkvW, [j * D, 0], [D, D]);
      const bias = (j: number) => tf.slice(qkvB, [j * D], [D]);
      return {
        attn: {
          layout: "joint",
          heads: H,
          wq: tf.mul(part(0), scale),
          bq: tf.mul(bias(0), scale),
          wp: projW,
          projBias,
        },
        kv: { layout: "joint", wk: part(1), wv: part(2), bv: bias(2) },
      };
    }
    const rows = (r0: number) => tf.slice(qkvW, [r0, 0], [dh, D]);
    const bias = (r0: number) => tf.slice(qkvB, [r0], [dh]);
    const t = <T extends tf.Tensor>(x: tf.Tensor) => tf.transpose(x) as T;
    const heads = Array.from({ length: this.cfg.numHeads }, (_, h): QueryProjHead => {
      const wq = tf.mul(rows(h * dh), scale) as tf.Tensor2D;
      const wp = tf.slice(projW, [0, h * dh], [D, dh]);
      return { wqT: t(wq), bq: tf.mul(bias(h * dh), scale), wq, wpT: t(wp), wp };
    });
    const kv = Array.from({ length: this.cfg.numHeads }, (_, h): KeyValueHead => {
      const wv = rows(2 * D + h * dh);
      return { wk: rows(D + h * dh), wvT: t(wv), bv: bias(2 * D + h * dh), wv };
    });
    return { attn: { layout: "perHead", heads, projBias }, kv: { layout: "perHead", heads: kv } };
  }

  /** Patch rows [B·P, C·p·p] → logits [B, classes], through the model's forward pass. */
  logits(patches: tf.Tensor2D, batch: number): tf.Tensor2D {
    const { cfg } = this;
    const D = cfg.embedDim;
    const blocks: BlockWeights[] = [];
    const kv: KeyValue[] = [];
    for (let i = 0; i < cfg.depth; i++) {
      const p = `blocks.${i}.`;
      const attention = this.attention(i);
      kv.push(attention.kv);
      blocks.push({
        norm1g: this.v(`${p}norm1.weight`),
        norm1b: this.v(`${p}norm1.bias`),
        attn: attention.attn,
        norm2g: this.v(`${p}norm2.weight`),
        norm2b: this.v(`${p}norm2.bias`),
        fc1: this.linear(`${p}mlp.fc1`),
        fc2: this.linear(`${p}mlp.fc2`),
      });
    }
    const t: VitTensors = {
      patch: this.linear("patch_embed.proj"),
      cls: tf.reshape(this.v("cls_token"), [1, D]),
      pos: tf.reshape(this.v("pos_embed"), [numTokens(cfg), D]),
      blocks,
      normG: this.v("norm.weight"),
      normB: this.v("norm.bias"),
    };
    return this.linear("head").forward(vitFeatures(cfg, t, kv, this.policy, patches, batch));
  }

  /** Host copies under timm names and shapes. */
  export(): Map<string, HostTensor> {
    const out = new Map<string, HostTensor>();
    for (const [name, t] of this.vars) {
      out.set(name, { shape: [...t.shape], data: Float32Array.from(t.dataSync() as Float32Array) });
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
