/**
 * timm's VisionTransformer with InfLoRA adapters on the key and value projections, in tfjs.
 * Tensor names follow timm; the k/v weights of finished tasks are folded in (W + Σ A_s B_s), so a step
 * costs the same at task 10 as at task 1. Only the current task's A (and its head) are ever trained; the
 * training pass itself is in vit_backprop.ts.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { AttentionShape, KeyValueHead } from "./attention.js";
import { type BlockWeights, blockForward } from "./block.js";
import { layerNormForward } from "./fused_ops.js";
import { disposeKeyValues, disposeQueryProj, keyValueHeads, queryProjHeads } from "./head_weights.js";
import { type AdapterTerm, addHost, concatTerms } from "./host_math.js";
import { FrozenLinear } from "./layers.js";
import { adapterKey, foldLiveAdapter, type LiveAdapter, type LiveFold, sameKey } from "./live_fold.js";
import { type ComputePolicy, defaultPolicy } from "./policy.js";
import { gridSize, numTokens, type VitConfig } from "./vit_config.js";

export type { LiveAdapter, LiveFold } from "./live_fold.js";

export interface HostTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}
export type HostWeights = ReadonlyMap<string, HostTensor>;

/** A finished task's adapters, paper notation: B [r, D] designed, A [D, r] trained; one entry per block. */
export interface FinishedAdapter {
  readonly rank: number;
  readonly Bk: readonly Float32Array[];
  readonly Bv: readonly Float32Array[];
  readonly Ak: readonly Float32Array[];
  readonly Av: readonly Float32Array[];
}

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

/** What the training pass needs from the model; see InfLoraVit.internals. */
export interface VitInternals {
  readonly cfg: VitConfig;
  readonly policy: ComputePolicy;
  readonly blocks: readonly BlockWeights[];
  readonly fold: LiveFold;
  readonly normG: tf.Tensor1D;
  readonly normB: tf.Tensor1D;
  embed(patchRows: tf.Tensor2D, batch: number): tf.Tensor2D;
}

interface CachedFold {
  readonly key: readonly tf.DataId[];
  readonly fold: LiveFold;
  /** The tensors the fold made (it shares the value biases with the finished-adapter weights). */
  readonly owned: tf.Tensor[];
}

export class InfLoraVit {
  readonly cfg: VitConfig;
  private readonly patch: FrozenLinear;
  /** [1, D] and [N, D]. */
  private readonly cls: tf.Tensor2D;
  private readonly pos: tf.Tensor2D;
  private readonly blocks: BlockWeights[] = [];
  /** Base k/v weights [D, D] and value bias per block, kept on the host to refold adapters from. */
  private readonly baseK: Float32Array[] = [];
  private readonly baseV: Float32Array[] = [];
  private readonly biasV: Float32Array[] = [];
  /** k/v weights per block and head with the finished adapters folded in. */
  private kv: KeyValueHead[][] = [];
  private readonly normG: tf.Tensor1D;
  private readonly normB: tf.Tensor1D;
  private readonly policyOverride: Partial<ComputePolicy>;
  private live?: CachedFold;

  /** `weights` must hold every tensor of `expectedShapes(cfg)` with that shape (the loader checks). */
  constructor(cfg: VitConfig, weights: HostWeights, options: VitOptions = {}) {
    this.cfg = cfg;
    this.policyOverride = options.policy ?? {};
    const D = cfg.embedDim;
    const get = (name: string): Float32Array => {
      const t = weights.get(name);
      if (!t) throw new Error(`weights: missing tensor ${name}`);
      return t.data;
    };
    const rowLen = cfg.inChans * cfg.patchSize * cfg.patchSize;
    this.patch = FrozenLinear.fromHost(
      get("patch_embed.proj.weight"),
      get("patch_embed.proj.bias"),
      D,
      rowLen,
    );
    this.cls = tf.tensor2d(get("cls_token"), [1, D]);
    this.pos = tf.tensor2d(get("pos_embed"), [numTokens(cfg), D]);
    for (let i = 0; i < cfg.depth; i++) {
      const p = `blocks.${i}.`;
      const qkvW = get(`${p}attn.qkv.weight`);
      const qkvB = get(`${p}attn.qkv.bias`);
      this.baseK.push(qkvW.slice(D * D, 2 * D * D));
      this.baseV.push(qkvW.slice(2 * D * D, 3 * D * D));
      this.biasV.push(qkvB.slice(2 * D, 3 * D));
      this.blocks.push({
        norm1g: tf.tensor1d(get(`${p}norm1.weight`)),
        norm1b: tf.tensor1d(get(`${p}norm1.bias`)),
        heads: queryProjHeads(qkvW, qkvB, get(`${p}attn.proj.weight`), D, cfg.numHeads),
        projBias: tf.tensor1d(get(`${p}attn.proj.bias`)),
        norm2g: tf.tensor1d(get(`${p}norm2.weight`)),
        norm2b: tf.tensor1d(get(`${p}norm2.bias`)),
        fc1: FrozenLinear.fromHost(get(`${p}mlp.fc1.weight`), get(`${p}mlp.fc1.bias`), cfg.mlpHidden, D),
        fc2: FrozenLinear.fromHost(get(`${p}mlp.fc2.weight`), get(`${p}mlp.fc2.bias`), D, cfg.mlpHidden),
      });
      this.kv.push(keyValueHeads(this.baseK[i], this.baseV[i], this.biasV[i], D, cfg.numHeads));
    }
    this.normG = tf.tensor1d(get("norm.weight"));
    this.normB = tf.tensor1d(get("norm.bias"));
  }

  get depth(): number {
    return this.cfg.depth;
  }

  /** The compute policy for the current backend (see policy.ts), with this model's overrides. */
  policy(): ComputePolicy {
    return { ...defaultPolicy(this.cfg), ...this.policyOverride };
  }

  /** Sets the k/v weights to W + Σ_s A_s B_s over the given finished adapters (replacing any earlier fold). */
  setFinishedAdapters(adapters: readonly FinishedAdapter[]): void {
    const D = this.cfg.embedDim;
    this.disposeLive();
    for (let i = 0; i < this.blocks.length; i++) {
      const terms = (which: "k" | "v"): AdapterTerm[] =>
        adapters.map((a) => ({
          rank: a.rank,
          A: which === "k" ? a.Ak[i] : a.Av[i],
          B: which === "k" ? a.Bk[i] : a.Bv[i],
        }));
      const kv = keyValueHeads(
        foldFinished(this.baseK[i], D, terms("k")),
        foldFinished(this.baseV[i], D, terms("v")),
        this.biasV[i],
        D,
        this.cfg.numHeads,
      );
      disposeKeyValues(this.kv[i]);
      this.kv[i] = kv;
    }
  }

  /** Patch rows [B·P, C·p·p] (see imagesToPatches) → cls features after the final norm, [B, D]. */
  features(patches: tf.Tensor2D, batch: number, options: ForwardOptions = {}): tf.Tensor2D {
    const policy = this.policy();
    const kv = options.adapter ? this.liveFold(options.adapter).kv : this.kv;
    const per = policy.perImage ? 1 : batch;
    const N = numTokens(this.cfg);
    const { collect } = options;
    let xs = tf.tidy(() =>
      (per === batch ? [patches] : this.splitImages(patches, batch)).map((rows) => this.embed(rows, per)),
    );
    for (let i = 0; i < this.blocks.length; i++) {
      const s = shapeFor(i, this.blocks.length, per, N);
      // A tidy per block and image group: intermediates are freed as soon as the group is through.
      const outs = xs.map((x) =>
        tf.tidy(() => {
          const f = blockForward(x, this.blocks[i], kv[i], s, policy);
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
      return layerNormForward(cls, this.normG, this.normB).y;
    });
    tf.dispose(xs);
    return feats;
  }

  /** The parts a training pass with the live adapter `adapter` needs (vit_backprop.ts). */
  internals(adapter: LiveAdapter): VitInternals {
    return {
      cfg: this.cfg,
      policy: this.policy(),
      blocks: this.blocks,
      fold: this.liveFold(adapter),
      normG: this.normG,
      normB: this.normB,
      embed: (rows, batch) => this.embed(rows, batch),
    };
  }

  /** Patch rows of `batch` images → tokens with class token and position embedding, [B·N, D]. */
  private embed(patchRows: tf.Tensor2D, batch: number): tf.Tensor2D {
    const D = this.cfg.embedDim;
    const N = numTokens(this.cfg);
    const emb = this.patch.forward(patchRows);
    if (batch === 1) return tf.add(tf.concat([this.cls, emb]), this.pos);
    const tokens = tf.concat(
      [tf.tile(tf.reshape(this.cls, [1, 1, D]), [batch, 1, 1]), tf.reshape(emb, [batch, N - 1, D])],
      1,
    );
    return tf.reshape(tf.add(tokens, tf.reshape(this.pos, [1, N, D])), [batch * N, D]);
  }

  /**
   * One [P, C·p·p] tensor per image, read back once on the host: a Slice per image would read the whole
   * input back each time on wasm.
   */
  private splitImages(patches: tf.Tensor2D, batch: number): tf.Tensor2D[] {
    const rows = gridSize(this.cfg) ** 2;
    const len = patches.shape[1];
    const data = patches.dataSync();
    return Array.from({ length: batch }, (_, b) =>
      tf.tensor2d(data.subarray(b * rows * len, (b + 1) * rows * len), [rows, len]),
    );
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
    this.patch.dispose();
    this.cls.dispose();
    this.pos.dispose();
    for (const b of this.blocks) {
      tf.dispose([b.norm1g, b.norm1b, b.projBias, b.norm2g, b.norm2b]);
      disposeQueryProj(b.heads);
      b.fc1.dispose();
      b.fc2.dispose();
    }
    for (const kv of this.kv) disposeKeyValues(kv);
    this.normG.dispose();
    this.normB.dispose();
  }
}

/**
 * W + Σ_s A_s B_s for a [D, D] base: the product of the concatenated factors as one matmul on the backend,
 * the sum with the base on the host (float64, one rounding).
 */
function foldFinished(base: Float32Array, D: number, terms: readonly AdapterTerm[]): Float32Array {
  if (terms.length === 0) return base;
  const { A, B, R } = concatTerms(terms, D);
  const product = tf.tidy(() => tf.matMul(tf.tensor2d(A, [D, R]), tf.tensor2d(B, [R, D])));
  const delta = product.dataSync() as Float32Array;
  product.dispose();
  return addHost(base, delta);
}

/** Every block but the last runs all its tokens; the last only needs its class tokens' output. */
export function shapeFor(block: number, depth: number, batch: number, tokens: number): AttentionShape {
  return { batch, tokens, queries: block === depth - 1 ? 1 : tokens };
}
