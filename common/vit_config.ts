/**
 * Dimensions of a timm VisionTransformer (class token, learned position embedding, pre-LN blocks): what the
 * worker builds its model from, and what the coordinator sends it at setup.
 */
export interface VitConfig {
  readonly imgSize: number;
  readonly patchSize: number;
  readonly inChans: number;
  readonly embedDim: number;
  readonly depth: number;
  readonly numHeads: number;
  readonly mlpHidden: number;
  /** The final LayerNorm; absent means `pretrained`. */
  readonly finalNorm?: FinalNorm;
}

/**
 * The final LayerNorm before the heads: the checkpoint's (`pretrained`, eps 1e-6 as timm), or a fresh,
 * frozen torch nn.LayerNorm (weight 1, bias 0, eps 1e-5), which the official InfLoRA_CA1 puts in place of
 * the pretrained one on CIFAR-100 (docs/design.md#classifier-alignment).
 */
export type FinalNorm = "pretrained" | "fresh";

/** torch.nn.LayerNorm's default eps: the fresh final norm's. */
export const FRESH_NORM_EPS = 1e-5;

/** timm's presets; the weights of `vit_base_patch16_224` are the ImageNet-21k augreg ones the reference uses. */
export const VIT_PRESETS: Record<string, VitConfig> = {
  vit_base_patch16_224: {
    imgSize: 224,
    patchSize: 16,
    inChans: 3,
    embedDim: 768,
    depth: 12,
    numHeads: 12,
    mlpHidden: 3072,
  },
  vit_small_patch16_224: {
    imgSize: 224,
    patchSize: 16,
    inChans: 3,
    embedDim: 384,
    depth: 12,
    numHeads: 6,
    mlpHidden: 1536,
  },
  vit_tiny_patch16_224: {
    imgSize: 224,
    patchSize: 16,
    inChans: 3,
    embedDim: 192,
    depth: 12,
    numHeads: 3,
    mlpHidden: 768,
  },
};

export function gridSize(cfg: VitConfig): number {
  return cfg.imgSize / cfg.patchSize;
}

/** Tokens per image: the patches plus the class token. */
export function numTokens(cfg: VitConfig): number {
  return gridSize(cfg) ** 2 + 1;
}

/** Every tensor the model needs, by timm name, with its shape. */
export function expectedShapes(cfg: VitConfig): Map<string, number[]> {
  const D = cfg.embedDim;
  const H = cfg.mlpHidden;
  const shapes = new Map<string, number[]>([
    ["cls_token", [1, 1, D]],
    ["pos_embed", [1, numTokens(cfg), D]],
    ["patch_embed.proj.weight", [D, cfg.inChans, cfg.patchSize, cfg.patchSize]],
    ["patch_embed.proj.bias", [D]],
  ]);
  for (let i = 0; i < cfg.depth; i++) {
    const p = `blocks.${i}.`;
    shapes.set(`${p}norm1.weight`, [D]);
    shapes.set(`${p}norm1.bias`, [D]);
    shapes.set(`${p}attn.qkv.weight`, [3 * D, D]);
    shapes.set(`${p}attn.qkv.bias`, [3 * D]);
    shapes.set(`${p}attn.proj.weight`, [D, D]);
    shapes.set(`${p}attn.proj.bias`, [D]);
    shapes.set(`${p}norm2.weight`, [D]);
    shapes.set(`${p}norm2.bias`, [D]);
    shapes.set(`${p}mlp.fc1.weight`, [H, D]);
    shapes.set(`${p}mlp.fc1.bias`, [H]);
    shapes.set(`${p}mlp.fc2.weight`, [D, H]);
    shapes.set(`${p}mlp.fc2.bias`, [D]);
  }
  shapes.set("norm.weight", [D]);
  shapes.set("norm.bias", [D]);
  return shapes;
}
