import { describe, expect, it } from "vitest";
import { counterRng } from "../../common/data/counter_rng.js";
import { pyRound } from "../../worker/data/py_round.js";
import { randomResizedCropBox } from "../../worker/data/random_resized_crop.js";

const LO = Math.log(3 / 4);
const HI = Math.log(4 / 3);

/** ∫ over the log-uniform aspect ratio of f(r), by the midpoint rule. */
function overRatio(f: (r: number) => number, steps = 20_000): number {
  let s = 0;
  for (let i = 0; i < steps; i++) s += f(Math.exp(LO + ((i + 0.5) / steps) * (HI - LO)));
  return s / steps;
}

describe("RandomResizedCrop parameters (torchvision's get_params)", () => {
  it("keeps every box inside the image, for all shapes", () => {
    for (const [w, h] of [
      [32, 32],
      [500, 375],
      [375, 500],
      [28, 28],
      [1000, 30],
      [7, 300],
      [1, 1],
      [2, 1],
    ]) {
      const outside: string[] = [];
      for (let i = 0; i < 2000; i++) {
        const b = randomResizedCropBox(w, h, counterRng(w, h, i));
        if (b.w <= 0 || b.h <= 0 || b.x < 0 || b.y < 0 || b.x + b.w > w || b.y + b.h > h) {
          outside.push(`${w}×${h}: ${JSON.stringify(b)}`);
        }
      }
      expect(outside).toEqual([]);
    }
  });

  it("draws area fractions in [0.08, 1] and aspect ratios in [3/4, 4/3] with the conditional mean torchvision has", () => {
    // Large square image: rounding is negligible; a try is kept iff s ≤ min(r, 1/r).
    const W = 4000;
    const n = 20_000;
    let sum = 0;
    let fallbacks = 0;
    let [sMin, sMax, rMin, rMax] = [1, 0, 1, -1];
    for (let i = 0; i < n; i++) {
      const b = randomResizedCropBox(W, W, counterRng(1, i));
      if (b.fallback) fallbacks++;
      const s = (b.w * b.h) / (W * W);
      const r = Math.log(b.w / b.h);
      [sMin, sMax, rMin, rMax] = [Math.min(sMin, s), Math.max(sMax, s), Math.min(rMin, r), Math.max(rMax, r)];
      sum += s;
    }
    expect(fallbacks).toBe(0);
    expect(sMin).toBeGreaterThan(0.0799);
    expect(sMin).toBeLessThan(0.081); // the whole range is used
    expect(sMax).toBeLessThanOrEqual(1);
    expect(sMax).toBeGreaterThan(0.99);
    expect(rMin).toBeGreaterThan(LO - 1e-3);
    expect(rMin).toBeLessThan(LO + 1e-2);
    expect(rMax).toBeLessThan(HI + 1e-3);
    expect(rMax).toBeGreaterThan(HI - 1e-2);
    // E[s | kept] = E_r[∫_{0.08}^{m} s ds] / E_r[m − 0.08], m = min(r, 1/r)
    const m = (r: number) => Math.min(r, 1 / r);
    const expected = overRatio((r) => (m(r) ** 2 - 0.08 ** 2) / 2) / overRatio((r) => m(r) - 0.08);
    // sd of s ≈ 0.26 → standard error 0.0018
    expect(Math.abs(sum / n - expected)).toBeLessThan(0.01);
  });

  it("falls back to the ratio-clamped centre crop at torchvision's rate for an extreme image", () => {
    // 4000 × 400: a try fits iff h = √(A·s/r) ≤ 400, i.e. s ≤ 0.1·r (w ≤ 4000 always holds).
    const W = 4000;
    const H = 400;
    const pKeep = overRatio((r) => Math.max(0, Math.min(0.1 * r, 1) - 0.08) / 0.92);
    const pFallback = (1 - pKeep) ** 10;
    const n = 20_000;
    let fallbacks = 0;
    const boxes = new Set<string>();
    for (let i = 0; i < n; i++) {
      const b = randomResizedCropBox(W, H, counterRng(2, i));
      if (b.fallback) {
        fallbacks++;
        boxes.add(JSON.stringify(b));
      }
    }
    // in_ratio 10 > 4/3: h = H, w = round(H·4/3) = 533, centred
    expect([...boxes]).toEqual([
      JSON.stringify({ x: Math.floor((W - 533) / 2), y: 0, w: 533, h: 400, fallback: true }),
    ]);
    const sd = Math.sqrt(n * pFallback * (1 - pFallback));
    expect(pFallback).toBeGreaterThan(0.5); // the case really exercises the fallback
    expect(Math.abs(fallbacks - n * pFallback)).toBeLessThan(5 * sd + 20);
  });

  it("clamps the fallback ratio for tall images too", () => {
    const b = randomResizedCropBox(10, 1000, { nextFloat: () => 0.999, nextUint32: () => 0 });
    // every try too tall; in_ratio 0.01 < 3/4 → w = 10, h = round(10 / 0.75) = 13, centred
    expect(b).toEqual({ x: 0, y: Math.floor((1000 - 13) / 2), w: 10, h: 13, fallback: true });
  });
});

describe("pyRound", () => {
  it("rounds ties to even like Python 3", () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4, 2.6].map(pyRound)).toEqual([0, 2, 2, -0, -2, -2, 2, 3]);
  });
});
