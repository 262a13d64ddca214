/**
 * The trainer's per-task linear algebra over all layers (coordinator/inflora/layers_parallel.ts): at
 * ViT-like widths it runs on worker threads and must give bitwise what the per-layer loop gives on this
 * thread, for a first and a later task; narrow layers stay on this thread.
 */
import { afterAll, describe, expect, it } from "vitest";
import { designB } from "../../coordinator/inflora/design.js";
import { type LayerMemory, updateDualGpm } from "../../coordinator/inflora/dualgpm.js";
import {
  designAllB,
  layerThreads,
  PARALLEL_MIN_WIDTH,
  updateAllLayers,
} from "../../coordinator/inflora/layers_parallel.js";
import { type Mat, matmulABt } from "../../coordinator/linalg/matrix.js";
import { closeThreadMap } from "../../coordinator/linalg/thread-map.js";
import { gaussian, make, mulberry32 } from "./linalg-helpers.js";

afterAll(async () => {
  await closeThreadMap();
});

/** A covariance with a decaying spectrum, like a ViT layer's input. */
function covariance(d: number, seed: number): Mat {
  const g = gaussian(mulberry32(seed));
  const x = make(d, d, (_, k) => g() * 10 ** (-k / 40));
  return matmulABt(x, x);
}

describe("the per-task linear algebra over layers", () => {
  it("gives bitwise the per-layer loop's B and DualGPM memory on worker threads", async () => {
    const d = PARALLEL_MIN_WIDTH;
    const layers = 3;
    expect(layerThreads(d, layers)).toBeGreaterThan(1);
    const covs = (seed: number) => Array.from({ length: layers }, (_, i) => covariance(d, seed + i));
    let loopMemory: (LayerMemory | undefined)[] = new Array(layers).fill(undefined);
    let threadMemory: (LayerMemory | undefined)[] = new Array(layers).fill(undefined);
    for (let t = 0; t < 2; t++) {
      const pre = covs(100 * t + 1);
      const post = covs(100 * t + 50);
      const opts = { threshold: 0.95 + 0.01 * t, gpmOnly: false };
      const bLoop = pre.map((c, i) => designB(c, 6, t === 0 ? undefined : loopMemory[i]));
      const bThreads = await designAllB(pre, 6, t === 0 ? undefined : threadMemory);
      expect(bThreads).toEqual(bLoop);
      loopMemory = updateDualGpm(loopMemory, post, opts);
      threadMemory = await updateAllLayers(threadMemory, post, opts);
      expect(threadMemory).toEqual(loopMemory);
      // The memory grew and stayed orthonormal enough to be a basis.
      expect(threadMemory[0]?.basis.cols).toBeGreaterThan(0);
    }
  });

  it("keeps narrow layers on this thread and refuses a bad thread count", () => {
    expect(layerThreads(48, 12)).toBe(1);
    expect(layerThreads(768, 1)).toBe(1);
    process.env.INFLORA_LINALG_LAYER_THREADS = "0";
    try {
      expect(() => layerThreads(768, 12)).toThrow(/INFLORA_LINALG_LAYER_THREADS/);
    } finally {
      delete process.env.INFLORA_LINALG_LAYER_THREADS;
    }
  });
});
