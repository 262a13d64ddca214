import { describe, expect, it } from "vitest";
import type { Head } from "../../common/adapters.js";
import { counterRng } from "../../common/data/counter_rng.js";
import {
  alignClassifier,
  type ClassStatistics,
  classSampler,
  drawSamples,
  meanFactor,
} from "../../coordinator/inflora/alignment.js";
import { alignmentLoss } from "../../coordinator/inflora/alignment_loss.js";
import { choleskyLower } from "../../coordinator/linalg/cholesky.js";
import { gemm32 } from "../../coordinator/linalg/gemm32.js";

/** Statistics with the given means [C][D] and every covariance s·I (+ nothing else). */
function isotropic(means: number[][], s: number): ClassStatistics {
  const C = means.length;
  const D = means[0].length;
  const covs = new Float32Array(C * D * D);
  for (let c = 0; c < C; c++) for (let i = 0; i < D; i++) covs[c * D * D + i * D + i] = s;
  return { D, classes: C, means: Float64Array.from(means.flat()), covs };
}

function zeroHeads(sizes: number[], D: number): Head[] {
  return sizes.map((n) => ({ classes: n, weight: new Float32Array(n * D), bias: new Float32Array(n) }));
}

/** The logit-norm cross-entropy of one sample, straight from its definition, in float64. */
function handLoss(z: number[], sizes: number[], tau: number | null, target: number): number {
  let y = z;
  if (tau !== null) {
    const norms: number[] = [];
    let at = 0;
    for (const n of sizes) {
      norms.push(Math.hypot(...z.slice(at, at + n)) + 1e-7);
      at += n;
    }
    const mean = norms.reduce((a, b) => a + b) / norms.length;
    y = z.map((v) => v / mean / tau);
  }
  const lse = Math.log(y.reduce((a, v) => a + Math.exp(v), 0));
  return lse - y[target];
}

describe("logit-normalised cross-entropy", () => {
  // 2 tasks (2 + 1 classes), D = 4, two samples.
  const X = [
    [0.5, -1, 2, 0.3],
    [-0.7, 0.2, 0.1, 1.5],
  ];
  const W = [
    [0.2, -0.1, 0.4, 0.0],
    [-0.3, 0.5, 0.1, 0.2],
    [0.1, 0.1, -0.2, 0.6],
  ];
  const bias = [0.05, -0.02, 0.1];
  const targets = [2, 0];
  const sizes = [2, 1];
  const logitsOf = (w: number[][]) =>
    X.map((x) => w.map((row, j) => row.reduce((s, v, d) => s + v * x[d], bias[j])));
  const flat = (rows: number[][]) => Float64Array.from(rows.flat());

  for (const tau of [0.1, null]) {
    it(`equals the formula computed by hand (logitNorm ${tau})`, () => {
      const z = logitsOf(W);
      const want = (handLoss(z[0], sizes, tau, targets[0]) + handLoss(z[1], sizes, tau, targets[1])) / 2;
      expect(alignmentLoss(flat(z), undefined, 2, targets, sizes, tau)).toBeCloseTo(want, 12);
      // The bias argument adds the same bias to every row.
      const noBias = X.map((x) => W.map((row) => row.reduce((s, v, d) => s + v * x[d], 0)));
      expect(alignmentLoss(flat(noBias), bias, 2, targets, sizes, tau)).toBeCloseTo(want, 12);
    });

    it(`has the gradient of central finite differences (logitNorm ${tau})`, () => {
      const z = flat(logitsOf(W));
      const grad = new Float64Array(z.length);
      alignmentLoss(z, undefined, 2, targets, sizes, tau, grad);
      const h = 1e-6;
      for (let k = 0; k < z.length; k++) {
        const f = (d: number) => {
          const rows = [Array.from(z.slice(0, 3)), Array.from(z.slice(3))];
          rows[Math.floor(k / 3)][k % 3] += d;
          return (handLoss(rows[0], sizes, tau, targets[0]) + handLoss(rows[1], sizes, tau, targets[1])) / 2;
        };
        expect(grad[k]).toBeCloseTo((f(h) - f(-h)) / (2 * h), 7);
      }
    });
  }
});

describe("Cholesky factor", () => {
  for (const path of ["default", "ts"]) {
    it(`reproduces A = L Lᵀ past one block (D = 150, ${path} path)`, () => {
      const saved = process.env.INFLORA_LINALG;
      if (path === "ts") process.env.INFLORA_LINALG = "ts";
      try {
        const n = 150;
        const rng = counterRng(3, 3);
        const v = Array.from({ length: n * n }, () => rng.nextFloat() - 0.5);
        const a = new Float64Array(n * n);
        for (let i = 0; i < n; i++)
          for (let j = 0; j < n; j++) {
            let s = i === j ? 1 : 0;
            for (let p = 0; p < n; p++) s += v[i * n + p] * v[j * n + p];
            a[i * n + j] = s;
          }
        const l = choleskyLower(a, n);
        let worst = 0;
        for (let i = 0; i < n; i++)
          for (let j = 0; j < n; j++) {
            if (j > i) expect(l[i * n + j]).toBe(0);
            let s = 0;
            for (let p = 0; p < n; p++) s += l[i * n + p] * l[j * n + p];
            worst = Math.max(worst, Math.abs(s - a[i * n + j]));
          }
        expect(worst).toBeLessThan(1e-11);
      } finally {
        if (saved === undefined) delete process.env.INFLORA_LINALG;
        else process.env.INFLORA_LINALG = saved;
      }
    });
  }
});

describe("float32 products", () => {
  for (const path of ["default", "ts"]) {
    it(`equal the definition for every transpose (${path} path)`, () => {
      const saved = process.env.INFLORA_LINALG;
      if (path === "ts") process.env.INFLORA_LINALG = "ts";
      try {
        const [m, n, k] = [5, 4, 3];
        const rng = counterRng(4, 4);
        const A = Array.from({ length: m }, () => Array.from({ length: k }, () => rng.nextFloat() - 0.5));
        const B = Array.from({ length: k }, () => Array.from({ length: n }, () => rng.nextFloat() - 0.5));
        for (const ta of [false, true])
          for (const tb of [false, true]) {
            const a = Float32Array.from(ta ? A[0].flatMap((_, p) => A.map((row) => row[p])) : A.flat());
            const b = Float32Array.from(tb ? B[0].flatMap((_, j) => B.map((row) => row[j])) : B.flat());
            const c = new Float32Array(m * n);
            gemm32(a, b, c, m, n, k, ta, tb);
            for (let i = 0; i < m; i++)
              for (let j = 0; j < n; j++) {
                const want = A[i].reduce((s, v, p) => s + Math.fround(v) * Math.fround(B[p][j]), 0);
                expect(c[i * n + j]).toBeCloseTo(want, 5);
              }
          }
      } finally {
        if (saved === undefined) delete process.env.INFLORA_LINALG;
        else process.env.INFLORA_LINALG = saved;
      }
    });
  }
});

describe("class sampling", () => {
  it("scales the means as the official code: 0.9 + (t_c+1)/(t+1)·0.1, the current task exactly 1", () => {
    expect(meanFactor(0, 2, 10)).toBeCloseTo(0.9 + 0.1 / 3, 15);
    expect(meanFactor(15, 2, 10)).toBeCloseTo(0.9 + 0.2 / 3, 15);
    expect(meanFactor(29, 2, 10)).toBe(1);
    // Unequal task sizes: the official c // (latest size) can run past the current task.
    expect(meanFactor(25, 2, 5)).toBeCloseTo(0.9 + 0.6 / 3, 15);
  });

  it("draws samples whose mean and covariance approach μ·factor and Σ", () => {
    const D = 3;
    const sigma = [
      [2, 0.6, -0.3],
      [0.6, 1, 0.2],
      [-0.3, 0.2, 0.5],
    ];
    const mu = [1, -2, 0.5];
    const stats: ClassStatistics = {
      D,
      classes: 1,
      means: Float64Array.from(mu),
      covs: Float32Array.from(sigma.flat()),
    };
    const factor = 0.95;
    const n = 40000;
    const out = new Float32Array(n * D);
    drawSamples(classSampler(stats, 0, factor), counterRng(1, 2, 3), n, out);
    const mean = [0, 0, 0];
    for (let i = 0; i < n; i++) for (let j = 0; j < D; j++) mean[j] += out[i * D + j] / n;
    for (let j = 0; j < D; j++) {
      // Five standard errors of the sample mean.
      expect(Math.abs(mean[j] - mu[j] * factor)).toBeLessThan(5 * Math.sqrt(sigma[j][j] / n));
    }
    for (let a = 0; a < D; a++)
      for (let b = 0; b < D; b++) {
        let s = 0;
        for (let i = 0; i < n; i++) s += (out[i * D + a] - mean[a]) * (out[i * D + b] - mean[b]);
        const cov = s / (n - 1);
        // Var of a sample covariance entry: (Σ_ab² + Σ_aa Σ_bb)/n; five standard errors.
        const se = Math.sqrt((sigma[a][b] ** 2 + sigma[a][a] * sigma[b][b]) / n);
        expect(Math.abs(cov - sigma[a][b])).toBeLessThan(5 * se);
      }
  });

  it("names the class whose statistics are unusable", () => {
    const good = isotropic(
      [
        [1, 0],
        [0, 1],
      ],
      1,
    );
    const nanMean = { ...good, means: Float64Array.of(1, 0, Number.NaN, 1) };
    expect(() => classSampler(nanMean, 1, 1)).toThrow(/class 1: mean\[0\] is NaN/);
    const notPd = { ...good, covs: Float32Array.of(1, 0, 0, 1, 1, 2, 2, 1) };
    expect(() => classSampler(notPd, 1, 1)).toThrow(/class 1: covariance is not positive definite: pivot 1/);
    const inf = { ...good, covs: Float32Array.of(1, 0, 0, 1, 1, 0, 0, Number.POSITIVE_INFINITY) };
    expect(() => classSampler(inf, 1, 1)).toThrow(/class 1: covariance\[1, 1\] is Infinity/);
  });
});

describe("alignClassifier", () => {
  // Three tasks of two classes in D = 6, means far apart relative to the spread.
  const D = 6;
  const means = Array.from({ length: 6 }, (_, c) => Array.from({ length: D }, (_, j) => (j === c ? 3 : 0)));
  const stats = isotropic(means, 0.25);
  const opts = { task: 2, latestTaskSize: 2, seed: 5, logitNorm: 0.1, samplesPerClass: 64, batchSize: 64 };

  it("lowers the loss over the epochs on separable classes and keeps the heads' number and sizes", async () => {
    const heads = zeroHeads([2, 2, 2], D);
    const seen: number[] = [];
    const r = await alignClassifier(heads, stats, { ...opts, onEpoch: (e) => seen.push(e.epoch) });
    expect(seen).toEqual([0, 1, 2, 3, 4]);
    expect(r.epochLoss).toHaveLength(5);
    // Fresh samples every epoch make the curve noisy near its floor; the fall from the start is large.
    expect(r.epochLoss[4]).toBeLessThan(0.5 * r.epochLoss[0]);
    expect(r.heads.map((h) => [h.classes, h.weight.length, h.bias.length])).toEqual([
      [2, 12, 2],
      [2, 12, 2],
      [2, 12, 2],
    ]);
    // The inputs are untouched; the aligned heads classify every class mean correctly.
    expect(heads.every((h) => h.weight.every((v) => v === 0))).toBe(true);
    for (let c = 0; c < 6; c++) {
      const logits = r.heads.flatMap((h) =>
        Array.from({ length: h.classes }, (_, k) =>
          means[c].reduce((s, x, j) => s + x * h.weight[k * D + j], h.bias[k]),
        ),
      );
      expect(logits.indexOf(Math.max(...logits))).toBe(c);
    }
  });

  it("gives identical heads for one seed and different heads for another", async () => {
    const a = await alignClassifier(zeroHeads([2, 2, 2], D), stats, { ...opts, epochs: 2 });
    const b = await alignClassifier(zeroHeads([2, 2, 2], D), stats, { ...opts, epochs: 2 });
    const c = await alignClassifier(zeroHeads([2, 2, 2], D), stats, { ...opts, epochs: 2, seed: 6 });
    expect(a.heads).toEqual(b.heads);
    expect(a.epochLoss).toEqual(b.epochLoss);
    expect(a.heads[0].weight).not.toEqual(c.heads[0].weight);
  });

  it("takes torch's SGD steps: momentum, weight decay and CosineAnnealingLR per epoch", async () => {
    // Two classes of two tasks (one each), one sample per class, one batch per epoch; the covariance is so
    // small that each sample is its scaled mean, so the steps can be computed by hand.
    const mu = [
      [1, 2],
      [-1, 0.5],
    ];
    const tiny = isotropic(mu, 1e-14);
    const heads: Head[] = [
      { classes: 1, weight: Float32Array.of(0.1, -0.2), bias: Float32Array.of(0.05) },
      { classes: 1, weight: Float32Array.of(-0.3, 0.4), bias: Float32Array.of(0) },
    ];
    const lr = 0.01;
    const wd = 5e-4;
    const epochs = 2;
    const r = await alignClassifier(heads, tiny, {
      task: 1,
      latestTaskSize: 1,
      seed: 0,
      logitNorm: null,
      epochs,
      samplesPerClass: 1,
      batchSize: 2,
    });
    // Class 0 is of task 0: factor 0.9 + 1/2·0.1; class 1 of task 1: factor 1.
    const x = [mu[0].map((v) => v * 0.95), mu[1].map((v) => v * 1)];
    // Parameters p = [w00, w01, w10, w11, b0, b1]; plain softmax cross-entropy averaged over the batch.
    let p = [0.1, -0.2, -0.3, 0.4, 0.05, 0];
    p = p.map((v) => Math.fround(v));
    const grad = (q: number[]) => {
      const g = new Array(6).fill(0);
      for (let i = 0; i < 2; i++) {
        const z = [0, 1].map((k) => q[2 * k] * x[i][0] + q[2 * k + 1] * x[i][1] + q[4 + k]);
        const m = Math.max(...z);
        const e = z.map((v) => Math.exp(v - m));
        const s = e[0] + e[1];
        for (let k = 0; k < 2; k++) {
          const d = (e[k] / s - (k === i ? 1 : 0)) / 2;
          g[2 * k] += d * x[i][0];
          g[2 * k + 1] += d * x[i][1];
          g[4 + k] += d;
        }
      }
      return g;
    };
    let buf: number[] = [];
    for (let e = 0; e < epochs; e++) {
      const rate = (lr * (1 + Math.cos((Math.PI * e) / epochs))) / 2; // 0.01, then 0.005
      const g = grad(p).map((v, i) => v + wd * p[i]);
      buf = e === 0 ? g : buf.map((b, i) => 0.9 * b + g[i]);
      p = p.map((v, i) => v - rate * buf[i]);
    }
    const got = [...r.heads[0].weight, ...r.heads[1].weight, r.heads[0].bias[0], r.heads[1].bias[0]];
    got.forEach((v, i) => {
      expect(v).toBeCloseTo(p[i], 6);
    });
  });

  it("refuses mismatched sizes, naming the field", async () => {
    const heads = zeroHeads([2, 2, 2], D);
    await expect(alignClassifier(heads.slice(0, 2), stats, opts)).rejects.toThrow(/heads has 2 heads/);
    await expect(alignClassifier(zeroHeads([2, 2, 3], D), stats, opts)).rejects.toThrow(
      /heads\[2\]\.weight|heads cover 7 classes/,
    );
    await expect(alignClassifier(heads, { ...stats, means: stats.means.subarray(1) }, opts)).rejects.toThrow(
      /stats\.means has 35 values/,
    );
    await expect(alignClassifier(heads, { ...stats, covs: stats.covs.subarray(1) }, opts)).rejects.toThrow(
      /stats\.covs/,
    );
    await expect(alignClassifier(heads, stats, { ...opts, task: 0 })).rejects.toThrow(
      /task must be a positive/,
    );
    await expect(alignClassifier(heads, stats, { ...opts, logitNorm: -1 })).rejects.toThrow(/logitNorm/);
  });
});
