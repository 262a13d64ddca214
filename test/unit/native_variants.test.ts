/**
 * The addon's elementwise kernel variants (baseline SSE2, AVX2, AVX-512) and its thread split: the variant
 * chosen is the widest the CPU's flags (/proc/cpuinfo) allow; every variant this CPU runs agrees with the
 * baseline to float32 rounding (the compiler fuses multiply-adds in the FMA builds: exp, erf and softmax
 * round differently in the last bit or two), and the two FMA builds give the same bits; and the kernels give
 * the same bits on one thread and on several, whichever way they split (by rows, by ranges, by columns). Needs
 * `npm run build:native`; without the addon these tests fail and say how to build it.
 */
import { readFileSync } from "node:fs";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type NativeAddon, requireNative } from "../../native/index.js";
import { mulberry32 } from "../helpers/tiny_vit.js";

let addon: NativeAddon;
let initial: { kernels: string; threads: number };

beforeEach(() => {
  addon = requireNative();
  const info = addon.blasInfo();
  initial = { kernels: info.kernels, threads: info.threads };
});

afterEach(() => {
  addon.useKernels(initial.kernels);
  addon.setThreads(initial.threads);
});

function random(n: number, seed: number, lo = -3, hi = 3): Float32Array {
  const rnd = mulberry32(seed);
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * rnd());
}

/** Inputs that reach every branch: ±0, ±inf, NaN, subnormals, exp's overflow and underflow edges. */
function edgy(n: number, seed: number): Float32Array {
  const x = random(n, seed, -12, 12);
  const special = [
    0,
    -0,
    Infinity,
    -Infinity,
    Number.NaN,
    1e-40,
    -1e-40,
    88.7,
    88.8,
    -103.9,
    -104,
    1e30,
    -1e30,
  ];
  for (let i = 0; i < special.length; i++) x[i * 37] = special[i];
  return x;
}

const ROWS = 1576; // ViT-B/16, batch 8: 8 × 197 tokens
const D = 192;

/** Everything the elementwise entry points compute, on inputs large enough to be split over threads. */
function runAll(): Float32Array[] {
  const out: Float32Array[] = [];
  const a = random(ROWS * D, 1);
  const b = random(ROWS * D, 2, 0.5, 2);
  const bias = random(D, 3);
  for (const op of ["add", "sub", "mul", "div", "sqdiff"] as const) {
    const o = new Float32Array(ROWS * D);
    addon.binary(op, a, [ROWS, D], b, [ROWS, D], o, [ROWS, D]); // one contiguous run
    out.push(o);
    const ob = new Float32Array(ROWS * D);
    addon.binary(op, a, [ROWS, D], bias, [D], ob, [ROWS, D]); // rows of a broadcast
    out.push(ob);
    const oc = new Float32Array(ROWS * D);
    addon.binary(op, bias, [1, D], random(ROWS, 4), [ROWS, 1], oc, [ROWS, D]); // outer product
    out.push(oc);
  }
  const x = edgy(ROWS * D, 5);
  for (const op of ["neg", "exp", "square", "sqrt", "rsqrt", "reciprocal", "abs", "erf"] as const) {
    const o = new Float32Array(x.length);
    addon.unary(op, x, o);
    out.push(o);
  }
  const logits = random(12 * 197 * 197, 6, -20, 20);
  const sm = new Float32Array(logits.length);
  addon.softmax(logits, sm, 12 * 197, 197);
  out.push(sm);
  const t = new Float32Array(ROWS * D);
  addon.transpose(a, [8, 197, 12, 16], [0, 2, 1, 3], t); // the attention heads' split
  out.push(t);
  const t2 = new Float32Array(ROWS * D);
  addon.transpose(a, [ROWS, D], [1, 0], t2); // one 2-D block
  out.push(t2);
  for (const op of ["sum", "mean", "max", "min"] as const) {
    const rows = new Float32Array(ROWS);
    addon.reduce(op, a, ROWS, D, 1, rows); // per row (LayerNorm's mean)
    const cols = new Float32Array(D);
    addon.reduce(op, a, 1, ROWS, D, cols); // per column (a bias gradient)
    out.push(rows, cols);
  }
  // The model's fused ops: LayerNorm and its gradient (per row), GELU and its gradient, softmax's backward.
  const gamma = random(D, 7, 0.5, 1.5);
  const ln = new Float32Array(ROWS * D);
  addon.layerNorm(a, gamma, bias, ln, ROWS, D, 1e-6);
  const lnGrad = new Float32Array(ROWS * D);
  addon.layerNormGrad(b, a, gamma, lnGrad, ROWS, D, 1e-6);
  const g = new Float32Array(x.length);
  addon.gelu(x, g);
  const gGrad = new Float32Array(x.length);
  addon.geluGrad(random(x.length, 8), x, gGrad);
  const smGrad = new Float32Array(sm.length);
  addon.softmaxGrad(random(sm.length, 9), sm, smGrad, 12 * 197, 197);
  out.push(ln, lnGrad, g, gGrad, smGrad);
  const n = new Float32Array(ROWS * D);
  addon.addN([a, b, a, b], n);
  out.push(n);
  const s = new Float64Array(ROWS * D);
  addon.sumF64([a, b, a], s);
  out.push(new Float32Array(s.buffer));
  return out;
}

/** |got − want| ≤ 1e-6·|want| + 5e-7: a few float32 ulps, or erf's 5e-7 absolute (its 1 − p·e^(−x²) cancels). */
function expectClose(got: Float32Array[], want: Float32Array[], what: string): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    let worst = -1;
    for (let j = 0; j < want[i].length && worst < 0; j++) {
      const g = got[i][j];
      const w = want[i][j];
      if (Number.isNaN(w) ? !Number.isNaN(g) : !(g === w || Math.abs(g - w) <= 1e-6 * Math.abs(w) + 5e-7)) {
        worst = j;
      }
    }
    expect(worst, `${what}: output ${i} differs at element ${worst}`).toBe(-1);
  }
}

function expectSameBits(got: Float32Array[], want: Float32Array[], what: string): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    const g = new Uint32Array(got[i].buffer, got[i].byteOffset, got[i].length);
    const w = new Uint32Array(want[i].buffer, want[i].byteOffset, want[i].length);
    let first = -1;
    for (let j = 0; j < w.length && first < 0; j++) {
      // Every NaN is the same NaN here: the kernels do not promise one payload.
      if (g[j] !== w[j] && !(Number.isNaN(got[i][j]) && Number.isNaN(want[i][j]))) first = j;
    }
    expect(first, `${what}: output ${i} differs first at element ${first}`).toBe(-1);
  }
}

describe("native kernel variants and the thread split", () => {
  it("picks the widest variant the CPU's flags allow, and says why", () => {
    const variants = addon.kernelVariants();
    expect(variants[0]).toMatchObject({ name: "baseline", supported: true });
    const info = addon.blasInfo();
    let flags: Set<string> | undefined;
    try {
      const line = readFileSync("/proc/cpuinfo", "utf8")
        .split("\n")
        .find((l) => l.startsWith("flags"));
      flags = line ? new Set(line.split(":")[1].trim().split(/\s+/)) : undefined;
    } catch {
      flags = undefined; // not Linux: only the consistency checks below
    }
    if (flags && process.arch === "x64" && !process.env.INFLORA_KERNELS) {
      const avx512 = ["avx512f", "avx512bw", "avx512dq", "avx512vl"].every((f) => flags.has(f));
      const avx2 = flags.has("avx2") && flags.has("fma");
      const built = new Set(variants.map((v) => v.name));
      const want = avx512 && built.has("avx512") ? "avx512" : avx2 && built.has("avx2") ? "avx2" : "baseline";
      expect(info.kernels).toBe(want);
      expect(info.kernelReason).toMatch(/fastest the CPU supports/);
    }
    const supported = variants.filter((v) => v.supported);
    for (const v of variants) if (!v.supported) expect(v.missing).not.toBe("");
    expect(supported.map((v) => v.name)).toContain(info.kernels);
    expect(addon.useKernels("no-such-variant")).toBe(false);
  });

  it("every variant the CPU runs agrees with the baseline; the FMA builds bit for bit", () => {
    addon.setThreads(1);
    expect(addon.useKernels("baseline")).toBe(true);
    const want = runAll();
    const results = new Map<string, Float32Array[]>();
    for (const v of addon.kernelVariants().filter((x) => x.supported && x.name !== "baseline")) {
      expect(addon.useKernels(v.name)).toBe(true);
      expect(addon.blasInfo().kernels).toBe(v.name);
      const got = runAll();
      expectClose(got, want, v.name);
      results.set(v.name, got);
    }
    const avx2 = results.get("avx2");
    const avx512 = results.get("avx512");
    if (avx2 && avx512) expectSameBits(avx512, avx2, "avx512 against avx2");
  });

  it("one thread and several give the same bits", () => {
    addon.setThreads(1);
    const want = runAll();
    for (const threads of [2, 3]) {
      addon.setThreads(threads);
      expectSameBits(runAll(), want, `${threads} threads`);
    }
  });
});
