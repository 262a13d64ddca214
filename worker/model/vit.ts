/**
 * timm's VisionTransformer with InfLoRA adapters on the key and value projections, in tfjs.
 * Tensor names follow timm; the k/v weights of finished tasks are folded in (W + Σ A_s B_s), so a step
 * costs the same at task 10 as at task 1. Only the current task's A (and its head) are ever trained.
 */
import * as tf from "@tensorflow/tfjs-core";
import { FrozenLinear, gelu, layerNorm } from "./layers.js";
import { gridSize, numTokens, type VitConfig } from "./vit_config.js";

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

/** The adapter being trained: per block Bᵀ [D, r] (shared by k and v, frozen) and the trainable Aᵀ [r, D]. */
export interface LiveAdapter {
  readonly BT: readonly tf.Tensor2D[];
  readonly AkT: readonly tf.Tensor2D[];
  readonly AvT: readonly tf.Tensor2D[];
}

export interface ForwardOptions {
  /** Receives every block's attention input (the norm1 output, [B·N, D]) — the covariance pass. */
  readonly collect?: (block: number, h: tf.Tensor2D) => void;
  readonly adapter?: LiveAdapter;
}

interface Block {
  norm1g: tf.Tensor1D;
  norm1b: tf.Tensor1D;
  q: FrozenLinear;
  k: FrozenLinear;
  v: FrozenLinear;
  baseK: tf.Tensor2D;
  baseV: tf.Tensor2D;
  proj: FrozenLinear;
  norm2g: tf.Tensor1D;
  norm2b: tf.Tensor1D;
  fc1: FrozenLinear;
  fc2: FrozenLinear;
}

export class InfLoraVit {
  readonly cfg: VitConfig;
  private readonly patch: FrozenLinear;
  private readonly cls: tf.Tensor3D;
  private readonly pos: tf.Tensor3D;
  private readonly blocks: Block[] = [];
  private readonly normG: tf.Tensor1D;
  private readonly normB: tf.Tensor1D;
  private readonly scale: number;

  /** `weights` must hold every tensor of `expectedShapes(cfg)` with that shape (the loader checks). */
  constructor(cfg: VitConfig, weights: HostWeights) {
    this.cfg = cfg;
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
    this.cls = tf.tensor3d(get("cls_token"), [1, 1, D]);
    this.pos = tf.tensor3d(get("pos_embed"), [1, numTokens(cfg), D]);
    for (let i = 0; i < cfg.depth; i++) {
      const p = `blocks.${i}.`;
      const qkvW = get(`${p}attn.qkv.weight`);
      const qkvB = get(`${p}attn.qkv.bias`);
      // Separate q, k, v weights: k and v get the folded adapters, and no slicing is needed in the step.
      const part = (j: number) =>
        FrozenLinear.fromHost(qkvW.slice(j * D * D, (j + 1) * D * D), qkvB.slice(j * D, (j + 1) * D), D, D);
      const k = part(1);
      const v = part(2);
      this.blocks.push({
        norm1g: tf.tensor1d(get(`${p}norm1.weight`)),
        norm1b: tf.tensor1d(get(`${p}norm1.bias`)),
        q: part(0),
        k,
        v,
        baseK: tf.clone(k.w),
        baseV: tf.clone(v.w),
        proj: FrozenLinear.fromHost(get(`${p}attn.proj.weight`), get(`${p}attn.proj.bias`), D, D),
        norm2g: tf.tensor1d(get(`${p}norm2.weight`)),
        norm2b: tf.tensor1d(get(`${p}norm2.bias`)),
        fc1: FrozenLinear.fromHost(get(`${p}mlp.fc1.weight`), get(`${p}mlp.fc1.bias`), cfg.mlpHidden, D),
        fc2: FrozenLinear.fromHost(get(`${p}mlp.fc2.weight`), get(`${p}mlp.fc2.bias`), D, cfg.mlpHidden),
      });
    }
    this.normG = tf.tensor1d(get("norm.weight"));
    this.normB = tf.tensor1d(get("norm.bias"));
    this.scale = (D / cfg.numHeads) ** -0.5;
  }

  get depth(): number {
    return this.cfg.depth;
  }

  /** Sets the k/v weights to W + Σ_s A_s B_s over the given finished adapters (replacing any earlier fold). */
  setFinishedAdapters(adapters: readonly FinishedAdapter[]): void {
    const D = this.cfg.embedDim;
    for (let i = 0; i < this.blocks.length; i++) {
      const blk = this.blocks[i];
      const fold = (base: tf.Tensor2D, which: "k" | "v") =>
        tf.tidy(() => {
          let w: tf.Tensor2D = base;
          for (const a of adapters) {
            const A = tf.tensor2d(which === "k" ? a.Ak[i] : a.Av[i], [D, a.rank]);
            const B = tf.tensor2d(which === "k" ? a.Bk[i] : a.Bv[i], [a.rank, D]);
            w = tf.add(w, tf.matMul(A, B));
          }
          return w === base ? tf.clone(base) : w;
        });
      const k = new FrozenLinear(fold(blk.baseK, "k"), tf.clone(blk.k.b));
      const v = new FrozenLinear(fold(blk.baseV, "v"), tf.clone(blk.v.b));
      blk.k.dispose();
      blk.v.dispose();
      blk.k = k;
      blk.v = v;
    }
  }

  /** Patch rows [B·P, C·p·p] (see imagesToPatches) → cls features after the final norm, [B, D]. */
  features(patches: tf.Tensor2D, batch: number, options: ForwardOptions = {}): tf.Tensor2D {
    const cfg = this.cfg;
    const D = cfg.embedDim;
    const N = numTokens(cfg);
    const P = gridSize(cfg) ** 2;
    const embedded = tf.reshape(this.patch.apply(patches), [batch, P, D]);
    const cls = tf.tile(this.cls, [batch, 1, 1]);
    let x = tf.reshape(tf.add(tf.concat([cls, embedded], 1), this.pos), [batch * N, D]) as tf.Tensor2D;
    for (let i = 0; i < this.blocks.length; i++) {
      const blk = this.blocks[i];
      const h = layerNorm(x, blk.norm1g, blk.norm1b);
      options.collect?.(i, h);
      let k = blk.k.apply(h);
      let v = blk.v.apply(h);
      const ad = options.adapter;
      if (ad) {
        const z = tf.matMul(h, ad.BT[i]);
        k = tf.add(k, tf.matMul(z, ad.AkT[i]));
        v = tf.add(v, tf.matMul(z, ad.AvT[i]));
      }
      const q = tf.mul(blk.q.apply(h), this.scale) as tf.Tensor2D;
      x = tf.add(x, blk.proj.apply(this.attention(q, k, v, batch)));
      const h2 = layerNorm(x, blk.norm2g, blk.norm2b);
      x = tf.add(x, blk.fc2.apply(gelu(blk.fc1.apply(h2)) as tf.Tensor2D));
    }
    const clsTokens = tf.reshape(tf.slice(tf.reshape(x, [batch, N, D]), [0, 0, 0], [batch, 1, D]), [
      batch,
      D,
    ]);
    return layerNorm(clsTokens as tf.Tensor2D, this.normG, this.normB);
  }

  /** Multi-head softmax attention; q is already scaled. Inputs and output [B·N, D]. */
  private attention(q: tf.Tensor2D, k: tf.Tensor2D, v: tf.Tensor2D, batch: number): tf.Tensor2D {
    const N = numTokens(this.cfg);
    const H = this.cfg.numHeads;
    const Dh = this.cfg.embedDim / H;
    const heads = (t: tf.Tensor2D) =>
      tf.transpose(tf.reshape(t, [batch, N, H, Dh]), [0, 2, 1, 3]) as tf.Tensor4D;
    const scores = tf.matMul(heads(q), heads(k), false, true);
    const out = tf.matMul(tf.softmax(scores), heads(v));
    return tf.reshape(tf.transpose(out, [0, 2, 1, 3]), [batch * N, this.cfg.embedDim]) as tf.Tensor2D;
  }

  dispose(): void {
    this.patch.dispose();
    this.cls.dispose();
    this.pos.dispose();
    for (const b of this.blocks) {
      for (const t of [b.norm1g, b.norm1b, b.norm2g, b.norm2b, b.baseK, b.baseV]) t.dispose();
      for (const l of [b.q, b.k, b.v, b.proj, b.fc1, b.fc2]) l.dispose();
    }
    this.normG.dispose();
    this.normB.dispose();
  }
}
