/**
 * timm's VisionTransformer with InfLoRA adapters on the key and value projections, in tfjs.
 * Tensor names follow timm; the k/v weights of finished tasks are folded in (W + Σ A_s B_s), so a step
 * costs the same at task 10 as at task 1. Only the current task's A (and its head) are ever trained; the
 * training pass itself is in vit_backprop.ts.
 */
import * as tf from "@tensorflow/tfjs-core";
import {
  type AdapterSet,
  foldAdapters,
  type Projection,
  type StackedFactors,
  stackFactors,
} from "../../common/adapters.js";
import { FRESH_NORM_EPS, gridSize, numTokens, type VitConfig } from "../../common/vit_config.js";
import type { AttentionShape, KeyValue } from "./attention.js";
import { type BlockWeights, blockForward } from "./block.js";
import { layerNormForward } from "./fused_ops.js";
import { disposeKeyValue, disposeQueryProj, keyValue, queryProj } from "./head_weights.js";
import { FrozenLinear } from "./layers.js";
import { adapterKey, foldLiveAdapter, type LiveAdapter, type LiveFold, sameKey } from "./live_fold.js";
import { type ComputePolicy, defaultPolicy } from "./policy.js";

export type { LiveAdapter, LiveFold } from "./live_fold.js";

export interface HostTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}
export type HostWeights = ReadonlyMap<string, HostTensor>;

export interface ForwardOptions {
  /**
   * Receives every block's attention input (the norm1 output, [B·N, D]) — the covariance pass. The tensor
   * is disposed when the callback returns: derive what you need from it inside the callback.
   */
  readonly collect?: (block: number, h: tf.Tensor2D) => void;
  readonly adapter?: LiveAdapter;
}

export interface VitOptions {
  /** Overrides of the backend-derived compute policy (tests run the wasm layout on the cpu backend). */
  readonly policy?: Partial<ComputePolicy>;
}

/**
 * A ViT's tensors in the layouts its forward pass multiplies with (head_weights.ts, layers.ts), the key and
 * value weights aside: those carry the adapters.
 */
export interface VitTensors {
  readonly patch: FrozenLinear;
  /** [1, D] and [N, D]. */
  readonly cls: tf.Tensor2D;
  readonly pos: tf.Tensor2D;
  readonly blocks: readonly BlockWeights[];
  readonly normG: tf.Tensor1D;
  readonly normB: tf.Tensor1D;
  /** The final norm's eps; absent means timm's LAYER_NORM_EPS. */
  readonly normEps?: number;
}

/** What the training pass needs from the model; see InfLoraVit.internals. */
export interface VitInternals extends VitTensors {
  readonly cfg: VitConfig;
  readonly policy: ComputePolicy;
  readonly fold: LiveFold;
}

interface CachedFold {
  readonly key: readonly tf.DataId[];
  readonly fold: LiveFold;
  /** The tensors the fold made (it shares the value biases with the finished-adapter weights). */
  readonly owned: tf.Tensor[];
}

export class InfLoraVit {
  readonly cfg: VitConfig;
  private readonly t: VitTensors;
  /** Base k/v weights [D, D] and value bias per block, kept on the host to refold adapters from. */
  private readonly baseK: Float32Array[] = [];
  private readonly baseV: Float32Array[] = [];
  private readonly biasV: Float32Array[] = [];
  /** k/v weights per block with the finished adapters folded in. */
  private kv: KeyValue[] = [];
  private readonly policyOverride: Partial<ComputePolicy>;
  /** The attention layout the weights were built in (policy.ts's jointHeads). */
  private readonly jointHeads: boolean;
  private live?: CachedFold;

  /** `weights` must hold every tensor of `expectedShapes(cfg)` with that shape (the loader checks). */
  constructor(cfg: VitConfig, weights: HostWeights, options: VitOptions = {}) {
    this.cfg = cfg;
    this.policyOverride = options.policy ?? {};
    this.jointHeads = this.policy().jointHeads;
    const D = cfg.embedDim;
    const get = (name: string): Float32Array => {
      const t = weights.get(name);
      if (!t) throw new Error(`weights: missing tensor ${name}`);
      return t.data;
    };
    const rowLen = cfg.inChans * cfg.patchSize * cfg.patchSize;
    const patch = FrozenLinear.fromHost(
      get("patch_embed.proj.weight"),
      get("patch_embed.proj.bias"),
      D,
      rowLen,
    );
    const cls = tf.tensor2d(get("cls_token"), [1, D]);
    const pos = tf.tensor2d(get("pos_embed"), [numTokens(cfg), D]);
    const blocks: BlockWeights[] = [];
    for (let i = 0; i < cfg.depth; i++) {
      const p = `blocks.${i}.`;
      const qkvW = get(`${p}attn.qkv.weight`);
      const qkvB = get(`${p}attn.qkv.bias`);
      this.baseK.push(qkvW.slice(D * D, 2 * D * D));
      this.baseV.push(qkvW.slice(2 * D * D, 3 * D * D));
      this.biasV.push(qkvB.slice(2 * D, 3 * D));
      blocks.push({
        norm1g: tf.tensor1d(get(`${p}norm1.weight`)),
        norm1b: tf.tensor1d(get(`${p}norm1.bias`)),
        attn: queryProj(
          qkvW,
          qkvB,
          get(`${p}attn.proj.weight`),
          get(`${p}attn.proj.bias`),
          D,
          cfg.numHeads,
          this.jointHeads,
        ),
        norm2g: tf.tensor1d(get(`${p}norm2.weight`)),
        norm2b: tf.tensor1d(get(`${p}norm2.bias`)),
        fc1: FrozenLinear.fromHost(get(`${p}mlp.fc1.weight`), get(`${p}mlp.fc1.bias`), cfg.mlpHidden, D),
        fc2: FrozenLinear.fromHost(get(`${p}mlp.fc2.weight`), get(`${p}mlp.fc2.bias`), D, cfg.mlpHidden),
      });
      this.kv.push(this.keyValue(this.baseK[i], this.baseV[i], this.biasV[i]));
    }
    this.t = { patch, cls, pos, blocks, ...finalNorm(cfg, get) };
  }

  get depth(): number {
    return this.cfg.depth;
  }

  /**
   * The compute policy for the current backend (see policy.ts), with this model's overrides and the
   * attention layout its weights were built in.
   */
  policy(): ComputePolicy {
    const p = { ...defaultPolicy(this.cfg), ...this.policyOverride };
    // Undefined only while the constructor asks which layout to build.
    return this.jointHeads === undefined ? p : { ...p, jointHeads: this.jointHeads };
  }

  private keyValue(wk: Float32Array, wv: Float32Array, bv: Float32Array): KeyValue {
    return keyValue(wk, wv, bv, this.cfg.embedDim, this.cfg.numHeads, this.jointHeads);
  }

  /**
   * Sets the k/v weights to W + Σ_s A_s B_s over the given finished adapters (replacing any earlier fold).
   * The products of every block are computed on the backend and read back together, once.
   */
  async setFinishedAdapters(sets: readonly AdapterSet[]): Promise<void> {
    const D = this.cfg.embedDim;
    const projections: Projection[] = ["k", "v"];
    const products = sets.length
      ? await productsOnBackend(
          Array.from({ length: this.cfg.depth }, (_, i) =>
            projections.map((which) => stackFactors(sets, i, which, D)),
          ).flat(),
          D,
        )
      : [];
    this.disposeLive();
    for (let i = 0; i < this.cfg.depth; i++) {
      const fold = (base: Float32Array, which: Projection) =>
        foldAdapters(base, D, sets, i, which, () => products[2 * i + projections.indexOf(which)]);
      const kv = this.keyValue(fold(this.baseK[i], "k"), fold(this.baseV[i], "v"), this.biasV[i]);
      disposeKeyValue(this.kv[i]);
      this.kv[i] = kv;
    }
  }

  /** Patch rows [B·P, C·p·p] (see imagesToPatches) → cls features after the final norm, [B, D]. */
  features(patches: tf.Tensor2D, batch: number, options: ForwardOptions = {}): tf.Tensor2D {
    const kv = options.adapter ? this.liveFold(options.adapter).kv : this.kv;
    return vitFeatures(this.cfg, this.t, kv, this.policy(), patches, batch, options.collect);
  }

  /** The parts a training pass with the live adapter `adapter` needs (vit_backprop.ts). */
  internals(adapter: LiveAdapter): VitInternals {
    return { ...this.t, cfg: this.cfg, policy: this.policy(), fold: this.liveFold(adapter) };
  }

  /**
   * The live adapter folded into the k/v weights. Kept across calls while the adapter's tensors stay the
   * same, so the micro-shards of one step fold once.
   */
  private liveFold(adapter: LiveAdapter): LiveFold {
    const key = adapterKey(adapter);
    if (this.live && sameKey(this.live.key, key)) return this.live.fold;
    this.disposeLive();
    const { fold, owned } = foldLiveAdapter(this.kv, adapter);
    this.live = { key, fold, owned };
    return fold;
  }

  private disposeLive(): void {
    if (!this.live) return;
    tf.dispose(this.live.owned);
    this.live = undefined;
  }

  dispose(): void {
    this.disposeLive();
    const t = this.t;
    t.patch.dispose();
    tf.dispose([t.cls, t.pos, t.normG, t.normB]);
    for (const b of t.blocks) {
      tf.dispose([b.norm1g, b.norm1b, b.norm2g, b.norm2b]);
      disposeQueryProj(b.attn);
      b.fc1.dispose();
      b.fc2.dispose();
    }
    for (const kv of this.kv) disposeKeyValue(kv);
  }
}

/** The final norm's tensors: the checkpoint's, or a fresh one (see FinalNorm). */
function finalNorm(
  cfg: VitConfig,
  get: (name: string) => Float32Array,
): Pick<VitTensors, "normG" | "normB" | "normEps"> {
  if (cfg.finalNorm === "fresh") {
    return { normG: tf.ones([cfg.embedDim]), normB: tf.zeros([cfg.embedDim]), normEps: FRESH_NORM_EPS };
  }
  return { normG: tf.tensor1d(get("norm.weight")), normB: tf.tensor1d(get("norm.bias")) };
}

/**
 * The forward pass: patch rows [B·P, C·p·p] (see imagesToPatches) → cls features after the final norm,
 * [B, D], with `kv` as each block's key and value weights. `collect` receives every block's attention
 * input (see ForwardOptions). With `policy.perImage` the rows are read back to the host to cut them per
 * image, so that path is not differentiable.
 */
export function vitFeatures(
  cfg: VitConfig,
  t: VitTensors,
  kv: readonly KeyValue[],
  policy: ComputePolicy,
  patches: tf.Tensor2D,
  batch: number,
  collect?: ForwardOptions["collect"],
): tf.Tensor2D {
  const per = policy.perImage ? 1 : batch;
  const N = numTokens(cfg);
  const depth = t.blocks.length;
  let xs = tf.tidy(() =>
    (per === batch ? [patches] : splitImages(cfg, patches, batch)).map((rows) =>
      embedTokens(cfg, t, rows, per),
    ),
  );
  for (let i = 0; i < depth; i++) {
    const s = shapeFor(i, depth, per, N);
    // A tidy per block and image group: intermediates are freed as soon as the group is through.
    const outs = xs.map((x) =>
      tf.tidy(() => {
        const f = blockForward(x, t.blocks[i], kv[i], s, policy);
        return collect ? [f.y, f.xh] : [f.y];
      }),
    );
    tf.dispose(xs);
    xs = outs.map((o) => o[0]);
    if (collect) {
      const inputs = outs.map((o) => o[1]);
      const h = inputs.length === 1 ? inputs[0] : tf.concat(inputs);
      collect(i, h);
      tf.dispose([h, ...inputs]);
    }
  }
  const feats = tf.tidy(() => {
    const cls = xs.length === 1 ? xs[0] : tf.concat(xs);
    return layerNormForward(cls, t.normG, t.normB, t.normEps).y;
  });
  tf.dispose(xs);
  return feats;
}

/** Patch rows of `batch` images → tokens with class token and position embedding, [B·N, D]. */
export function embedTokens(
  cfg: VitConfig,
  t: VitTensors,
  patchRows: tf.Tensor2D,
  batch: number,
): tf.Tensor2D {
  const D = cfg.embedDim;
  const N = numTokens(cfg);
  const emb = t.patch.forward(patchRows);
  if (batch === 1) return tf.add(tf.concat([t.cls, emb]), t.pos);
  const tokens = tf.concat(
    [tf.tile(tf.reshape(t.cls, [1, 1, D]), [batch, 1, 1]), tf.reshape(emb, [batch, N - 1, D])],
    1,
  );
  return tf.reshape(tf.add(tokens, tf.reshape(t.pos, [1, N, D])), [batch * N, D]);
}

/**
 * One [P, C·p·p] tensor per image, read back once on the host: a Slice per image would read the whole
 * input back each time on wasm.
 */
function splitImages(cfg: VitConfig, patches: tf.Tensor2D, batch: number): tf.Tensor2D[] {
  const rows = gridSize(cfg) ** 2;
  const len = patches.shape[1];
  const data = patches.dataSync();
  return Array.from({ length: batch }, (_, b) =>
    tf.tensor2d(data.subarray(b * rows * len, (b + 1) * rows * len), [rows, len]),
  );
}

/**
 * Σ_s A_s B_s of the finished adapters, one float32 matmul on the backend per stack of factors (see
 * foldAdapters), read back in one piece.
 */
async function productsOnBackend(stacks: readonly StackedFactors[], D: number): Promise<Float32Array[]> {
  const all = tf.tidy(() =>
    tf.stack(stacks.map(({ A, B, R }) => tf.matMul(tf.tensor2d(A, [D, R]), tf.tensor2d(B, [R, D])))),
  );
  const v = (await all.data()) as Float32Array;
  all.dispose();
  return stacks.map((_, k) => v.slice(k * D * D, (k + 1) * D * D));
}

/** Every block but the last runs all its tokens; the last only needs its class tokens' output. */
export function shapeFor(block: number, depth: number, batch: number, tokens: number): AttentionShape {
  return { batch, tokens, queries: block === depth - 1 ? 1 : tokens };
}
