/**
 * What the full and the quick demo run. The continual methods' hyperparameters live in the configs under
 * configs/demo_*.json; the quick mode (CI) only cuts their epochs and the backbone's pretraining.
 */
import type { BackboneRecipe } from "./backbone.js";

export type DemoMode = "full" | "quick";

/** 28×28 images with 7×7 patches (16 tokens + class token): no resampling of Fashion-MNIST, and fast on a CPU. */
const MODEL = {
  imgSize: 28,
  patchSize: 7,
  inChans: 3,
  embedDim: 64,
  depth: 4,
  numHeads: 4,
  mlpHidden: 256,
} as const;

export interface DemoSettings {
  readonly backbone: BackboneRecipe;
  /** Epochs of every continual task; undefined keeps the configs' own. */
  readonly epochs?: number;
}

export const DEMO_SETTINGS: Record<DemoMode, DemoSettings> = {
  full: {
    backbone: {
      model: MODEL,
      epochs: 15,
      batchSize: 64,
      lr: 1e-3,
      weightDecay: 1e-4,
      labelSmoothing: 0.1,
      flip: true,
      seed: 0,
    },
  },
  quick: {
    backbone: {
      model: MODEL,
      epochs: 3,
      batchSize: 64,
      lr: 1e-3,
      weightDecay: 1e-4,
      labelSmoothing: 0.1,
      flip: true,
      seed: 0,
    },
    // One epoch is too little for the sequential baseline's drift to show; two keep CI at a couple of minutes.
    epochs: 2,
  },
};
