/**
 * Float64 linear algebra benchmark: eighDescending on covariance-like matrices of growing size,
 * leftSingular on a square non-symmetric matrix, the TypeScript fallback (eigh-ts.ts) beside the
 * default path on D = 48 and 768, and (when python3 with numpy is installed) numpy's eigh/svd on the
 * same shapes for reference.
 *
 *   npx tsx bench/linalg.ts            # full run (a few minutes)
 *   npx tsx bench/linalg.ts --quick    # sizes up to 384, for a smoke test
 *   npx tsx bench/linalg.ts --ts-baseline abaa4aa
 *       # also the TypeScript solver of that git revision (before eigh-ts.ts: its tuned QL/QR with
 *       # unrolled rotation kernels), side by side with today's on the same matrices
 *
 * Prints a table and writes bench/results/linalg.json.
 */

import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { arch, availableParallelism, cpus, loadavg, platform, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { eighDescending, eighDescendingTs } from "../coordinator/linalg/eigh.js";
import {
  frobenius,
  identity,
  type Mat,
  mat,
  matmul,
  matmulABt,
  matmulAtB,
  sub,
} from "../coordinator/linalg/matrix.js";
import { leftSingular } from "../coordinator/linalg/svd.js";

interface Row {
  readonly name: string;
  readonly shape: string;
  readonly reps: number;
  readonly minMs: number;
  readonly medianMs: number;
  /** Process CPU time of the fastest repetition: steadier than wall time on a shared machine. */
  readonly cpuMs: number;
  /** ‖A − VΛVᵀ‖_F / ‖A‖_F (for leftSingular: of X Xᵀ with s²). */
  readonly reconstruction?: number;
  /** ‖VᵀV − I‖_F. */
  readonly orthogonality?: number;
}

const quick = process.argv.includes("--quick");
const baselineAt = process.argv.indexOf("--ts-baseline");
const baselineRev = baselineAt >= 0 ? process.argv[baselineAt + 1] : undefined;
if (baselineAt >= 0 && !baselineRev) throw new Error("--ts-baseline needs a git revision");
const sizes = quick ? [48, 192, 384] : [48, 192, 384, 768, 1024];

/** mulberry32 + Box–Muller: deterministic Gaussian samples. */
function gaussian(seed: number): () => number {
  let s = seed >>> 0;
  const uniform = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

function randomMat(rows: number, cols: number, seed: number): Mat {
  const g = gaussian(seed);
  const a = mat(rows, cols);
  for (let i = 0; i < a.data.length; i++) a.data[i] = g();
  return a;
}

/**
 * A covariance of n-dimensional features whose spectrum decays like 10^(−k/20), as ViT activations'
 * do: C = (G D)(G D)ᵀ / n with G Gaussian and D = diag(10^(−k/40)).
 */
function decayingCovariance(n: number, seed: number): Mat {
  const g = randomMat(n, n, seed);
  for (let i = 0; i < n; i++) for (let k = 0; k < n; k++) g.data[i * n + k] *= 10 ** (-k / 40) / Math.sqrt(n);
  return matmulABt(g, g);
}

function wishart(n: number, seed: number): Mat {
  const x = randomMat(n, n, seed);
  return matmulABt(x, x);
}

function accuracy(a: Mat, values: Float64Array, v: Mat): { reconstruction: number; orthogonality: number } {
  const n = a.rows;
  const vl = mat(n, n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) vl.data[i * n + j] = v.data[i * n + j] * values[j];
  return {
    reconstruction: frobenius(sub(a, matmulABt(vl, v))) / frobenius(a),
    orthogonality: frobenius(sub(matmulAtB(v, v), identity(n))),
  };
}

function time<T>(reps: number, f: () => T): { minMs: number; medianMs: number; cpuMs: number; last: T } {
  f(); // JIT warm-up
  const ts: number[] = [];
  let cpuMs = Number.POSITIVE_INFINITY;
  let last: T | undefined;
  for (let r = 0; r < reps; r++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    last = f();
    ts.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpuMs = Math.min(cpuMs, (c.user + c.system) / 1000);
  }
  ts.sort((x, y) => x - y);
  return { minMs: ts[0], medianMs: ts[Math.floor(ts.length / 2)], cpuMs, last: last as T };
}

const here = dirname(fileURLToPath(import.meta.url));
const rows: Row[] = [];
const show = (r: Row) => {
  rows.push(r);
  const acc =
    r.reconstruction === undefined
      ? ""
      : `  rec ${r.reconstruction.toExponential(1)}  orth ${r.orthogonality?.toExponential(1)}`;
  console.log(
    `${r.name.padEnd(46)} ${r.shape.padStart(10)}  min ${r.minMs.toFixed(1).padStart(8)} ms  median ${r.medianMs
      .toFixed(1)
      .padStart(8)} ms  cpu ${r.cpuMs.toFixed(1).padStart(8)} ms  (×${r.reps})${acc}`,
  );
};

console.log(`cpu: ${cpus()[0]?.model ?? "?"} ×${availableParallelism()}, node ${process.version}`);
console.log(
  `load average at start: ${loadavg()
    .map((x) => x.toFixed(2))
    .join(" ")}\n`,
);

for (const n of sizes) {
  const a = decayingCovariance(n, n);
  const reps = n <= 192 ? 10 : n <= 384 ? 5 : 3;
  const t = time(reps, () => eighDescending(a));
  show({
    name: "eighDescending (covariance)",
    shape: `${n}×${n}`,
    reps,
    minMs: t.minMs,
    medianMs: t.medianMs,
    cpuMs: t.cpuMs,
    ...accuracy(a, t.last.values, t.last.vectors),
  });
}

const nSvd = quick ? 384 : 768;
{
  // Gaussian X: X Xᵀ has a flat spectrum, the harder case for the tridiagonal QL.
  const x = randomMat(nSvd, nSvd, 7);
  const t = time(3, () => leftSingular(x));
  const xxt = matmulABt(x, x);
  show({
    name: "leftSingular (Gaussian X)",
    shape: `${nSvd}×${nSvd}`,
    reps: 3,
    minMs: t.minMs,
    medianMs: t.medianMs,
    cpuMs: t.cpuMs,
    ...accuracy(xxt, t.last.s2, t.last.u),
  });
  const w = time(3, () => eighDescending(xxt));
  show({
    name: "eighDescending (X Xᵀ, Wishart)",
    shape: `${nSvd}×${nSvd}`,
    reps: 3,
    minMs: w.minMs,
    medianMs: w.medianMs,
    cpuMs: w.cpuMs,
    ...accuracy(xxt, w.last.values, w.last.vectors),
  });
  const mm = time(3, () => matmul(x, x));
  show({
    name: "matmul",
    shape: `${nSvd}×${nSvd}`,
    reps: 3,
    minMs: mm.minMs,
    medianMs: mm.medianMs,
    cpuMs: mm.cpuMs,
  });
}

/** The TypeScript eigensolvers side by side on the same matrices, as process CPU time. */
const tsFallback: Row[] = [];
{
  const baseline = baselineRev === undefined ? undefined : await loadBaselineSolver(baselineRev);
  console.log(
    `\nTypeScript eigensolver${baseline ? ` (today's and ${baselineRev}'s)` : ""} beside the default path:`,
  );
  for (const n of quick ? [48, 192] : [48, 768]) {
    const kinds: [string, Mat][] = [
      ["covariance", decayingCovariance(n, n)],
      ["X Xᵀ, Wishart", wishart(n, 7)],
    ];
    for (const [kind, a] of kinds) {
      const reps = n <= 192 ? 10 : 3;
      const solvers: [string, (a: Mat) => { values: Float64Array; vectors: Mat }][] = [
        ["eighDescending (default path)", eighDescending],
        ["eighDescendingTs (eigh-ts.ts)", eighDescendingTs],
      ];
      if (baseline) solvers.push([`TypeScript solver @${baselineRev}`, baseline]);
      for (const [name, solve] of solvers) {
        const t = time(reps, () => solve(a));
        const row = {
          name: `${name}, ${kind}`,
          shape: `${n}×${n}`,
          reps,
          minMs: t.minMs,
          medianMs: t.medianMs,
          cpuMs: t.cpuMs,
          ...accuracy(a, t.last.values, t.last.vectors),
        };
        tsFallback.push(row);
        show(row);
      }
    }
  }
}

const numpy = runNumpy();
if ("skipped" in numpy) console.log(`\nnumpy comparison skipped: ${numpy.skipped}`);
else {
  console.log(`\nnumpy ${numpy.version} (OPENBLAS/MKL/OMP threads = 1), for reference:`);
  for (const r of numpy.rows) {
    console.log(`  ${r.name.padEnd(28)} ${r.shape.padStart(10)}  min ${r.minMs.toFixed(1).padStart(8)} ms`);
  }
}

const out = {
  machine: {
    cpu: cpus()[0]?.model ?? "unknown",
    threads: availableParallelism(),
    node: process.version,
    platform: platform(),
    arch: arch(),
    loadAverage: loadavg(),
  },
  date: new Date().toISOString(),
  quick,
  results: rows,
  tsFallback: { baseline: baselineRev ?? null, rows: tsFallback },
  numpy,
};
mkdirSync(join(here, "results"), { recursive: true });
const file = join(here, "results", "linalg.json");
writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
console.log(`\nwrote ${file}`);

/**
 * eighDescending as the TypeScript solver of git revision `rev` computed it (before eigh-ts.ts:
 * tridiagonal.ts, tridiagonal-eig.ts, rotations.ts), loaded from `git show` into a temporary folder;
 * the input checks and scaling of today's eigh.ts are left out, the benchmark's matrices need none.
 */
async function loadBaselineSolver(rev: string): Promise<(a: Mat) => { values: Float64Array; vectors: Mat }> {
  const dir = mkdtempSync(join(tmpdir(), "inflora-linalg-baseline-"));
  const matrixModule = pathToFileURL(join(here, "../coordinator/linalg/matrix.ts")).href;
  for (const file of ["tridiagonal.ts", "tridiagonal-eig.ts", "rotations.ts"]) {
    const text = execFileSync("git", ["show", `${rev}:coordinator/linalg/${file}`], {
      cwd: here,
      encoding: "utf8",
    });
    writeFileSync(join(dir, file), text.replace(`from "./matrix.js"`, `from "${matrixModule}"`));
  }
  const tri = await import(pathToFileURL(join(dir, "tridiagonal.ts")).href);
  const eig = await import(pathToFileURL(join(dir, "tridiagonal-eig.ts")).href);
  return (a: Mat) => {
    const n = a.rows;
    const { d, e, q } = tri.tridiagonalize(a.data, n);
    eig.tridiagonalEigen(d, e, q, n);
    const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => d[y] - d[x] || x - y);
    const values = Float64Array.from(order, (i) => d[i]);
    const vectors = mat(n, n);
    for (let r = 0; r < n; r++) for (let j = 0; j < n; j++) vectors.data[r * n + j] = q[r * n + order[j]];
    return { values, vectors };
  };
}

/** numpy's eigh and svd on the same shapes, single-threaded BLAS; skipped if python3/numpy is absent. */
function runNumpy():
  | { skipped: string }
  | { version: string; rows: { name: string; shape: string; minMs: number }[] } {
  const script = `
import json, sys, time
import numpy as np
sizes = json.loads(sys.argv[1]); n_svd = int(sys.argv[2])
rng = np.random.default_rng(0)
def best(f, reps=3):
    f()
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); f(); ts.append((time.perf_counter() - t) * 1e3)
    return min(ts)
rows = []
for n in sizes:
    g = rng.standard_normal((n, n)) * 10.0 ** (-np.arange(n) / 40) / np.sqrt(n)
    c = g @ g.T
    rows.append({"name": "np.linalg.eigh (covariance)", "shape": f"{n}x{n}", "minMs": best(lambda: np.linalg.eigh(c))})
x = rng.standard_normal((n_svd, n_svd))
rows.append({"name": "np.linalg.svd", "shape": f"{n_svd}x{n_svd}", "minMs": best(lambda: np.linalg.svd(x))})
print(json.dumps({"version": np.__version__, "rows": rows}))
`;
  const env = { ...process.env, OPENBLAS_NUM_THREADS: "1", MKL_NUM_THREADS: "1", OMP_NUM_THREADS: "1" };
  const r = spawnSync("python3", ["-c", script, JSON.stringify(sizes), String(nSvd)], {
    encoding: "utf8",
    env,
    timeout: 300_000,
  });
  if (r.error) return { skipped: `python3 not runnable (${r.error.message})` };
  if (r.status !== 0) return { skipped: `python3/numpy failed: ${r.stderr.trim().split("\n").pop() ?? ""}` };
  try {
    return JSON.parse(r.stdout);
  } catch {
    return { skipped: "could not parse numpy output" };
  }
}
