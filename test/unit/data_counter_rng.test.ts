import { describe, expect, it } from "vitest";
import { counterRng } from "../../common/data/counter_rng.js";
import { philox4x32 } from "../../common/data/philox.js";

const hex = (a: Uint32Array) => Array.from(a, (x) => x.toString(16).padStart(8, "0")).join(" ");

describe("Philox4x32-10", () => {
  it("matches the Random123 known-answer vectors", () => {
    const out = new Uint32Array(4);
    philox4x32([0, 0, 0, 0], 0, 0, out);
    expect(hex(out)).toBe("6627e8d5 e169c58d bc57ac4c 9b00dbd8");
    philox4x32([0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], 0xffffffff, 0xffffffff, out);
    expect(hex(out)).toBe("408f276d 41c83b0e a20bc7c6 6d5451fd");
    philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], 0xa4093822, 0x299f31d0, out);
    expect(hex(out)).toBe("d16cfe09 94fdcceb 5001e420 24126ea1");
  });
});

describe("counterRng", () => {
  const draw = (n: number, ...key: number[]) => {
    const r = counterRng(...key);
    return Array.from({ length: n }, () => r.nextUint32());
  };

  it("gives the same stream for the same key", () => {
    expect(draw(10, 1, 2, 3)).toEqual(draw(10, 1, 2, 3));
  });

  it("gives unrelated streams for nearby, negative, large and longer keys", () => {
    const keys = [
      [1, 2, 3],
      [1, 2, 4],
      [1, 3, 3],
      [2, 2, 3],
      [1, 2, -1],
      [1, 2, -2],
      [1, 2, 3, 0],
      [1, 2],
      [2 ** 40, 2, 3],
      [],
    ];
    const firsts = new Set(keys.map((k) => draw(2, ...k).join(",")));
    expect(firsts.size).toBe(keys.length);
  });

  it("refuses keys that are not safe integers", () => {
    expect(() => counterRng(1.5)).toThrow(/safe integers/);
    expect(() => counterRng(2 ** 60)).toThrow(/safe integers/);
  });

  it("is uniform: floats in [0, 1) with even deciles, and bits balanced", () => {
    const r = counterRng(7, 0, 0);
    const bins = new Array(10).fill(0);
    const n = 100_000;
    let min = 1;
    let max = 0;
    for (let i = 0; i < n; i++) {
      const x = r.nextFloat();
      min = Math.min(min, x);
      max = Math.max(max, x);
      bins[Math.floor(x * 10)]++;
    }
    expect(min).toBeGreaterThanOrEqual(0);
    expect(max).toBeLessThan(1);
    // chi-square with 9 degrees of freedom: 27.9 is the 0.1 % quantile.
    const chi2 = bins.reduce((s, b) => s + (b - n / 10) ** 2 / (n / 10), 0);
    expect(chi2).toBeLessThan(27.9);
    const ones = new Array(32).fill(0);
    const m = 20_000;
    for (let i = 0; i < m; i++) {
      const u = r.nextUint32();
      for (let b = 0; b < 32; b++) ones[b] += (u >>> b) & 1;
    }
    // each bit: mean m/2, sd √m/2 ≈ 71; 5 sd
    for (const c of ones) expect(Math.abs(c - m / 2)).toBeLessThan(360);
  });

  it("streams of consecutive sample indices are uncorrelated", () => {
    const n = 5000;
    const xs = Array.from({ length: n }, (_, i) => counterRng(0, 0, 0, i).nextFloat());
    let cov = 0;
    for (let i = 1; i < n; i++) cov += (xs[i] - 0.5) * (xs[i - 1] - 0.5);
    // correlation of neighbours: sd ≈ 1/√n ≈ 0.014
    expect(Math.abs(cov / (n - 1) / (1 / 12))).toBeLessThan(0.07);
  });
});
