/** A small random ViT in timm's layout, for tests that need a model but not the fixture's numbers. */

import { expectedShapes, type VitConfig } from "../../common/vit_config.js";
import type { HostTensor } from "../../worker/model/vit.js";

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const TINY: VitConfig = {
  imgSize: 8,
  patchSize: 4,
  inChans: 3,
  embedDim: 8,
  depth: 2,
  numHeads: 2,
  mlpHidden: 16,
};

export function randomWeights(cfg: VitConfig, seed: number, scale = 0.5): Map<string, HostTensor> {
  const rnd = mulberry32(seed);
  const out = new Map<string, HostTensor>();
  for (const [name, shape] of expectedShapes(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    const isNormWeight = /norm\d?\.weight$|^norm\.weight$/.test(name);
    for (let i = 0; i < n; i++) data[i] = isNormWeight ? 1 + (rnd() - 0.5) * 0.2 : (rnd() * 2 - 1) * scale;
    out.set(name, { shape, data });
  }
  return out;
}

export function randomArray(n: number, seed: number, scale = 1): Float32Array {
  const rnd = mulberry32(seed);
  return Float32Array.from({ length: n }, () => (rnd() * 2 - 1) * scale);
}
