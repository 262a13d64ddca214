/**
 * Classifier alignment (coordinator/inflora/alignment.ts) at ImageNet-R's size: C = 200 classes, D = 768,
 * 256 samples per class, batches of 256, after task 9 of 10. Times the per-class Cholesky factors and each
 * epoch (sampling, shuffle, 200 SGD steps) separately, with the statistics synthetic (a few distinct
 * positive definite covariances, repeated).
 *
 *   npx tsx bench/alignment.ts                 # C = 200, D = 768, 2 epochs
 *   npx tsx bench/alignment.ts --classes 20 --epochs 1
 *   INFLORA_LINALG_THREADS=2 npx tsx bench/alignment.ts
 *
 * Prints the figures and writes bench/results/alignment.json.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { Head } from "../common/adapters.js";
import { counterRng } from "../common/data/counter_rng.js";
import { alignClassifier, type ClassStatistics, classSampler } from "../coordinator/inflora/alignment.js";
import { lapack } from "../coordinator/linalg/lapack.js";
import { mat, matmulABt } from "../coordinator/linalg/matrix.js";
import { nativeStatus } from "../native/index.js";

const { values } = parseArgs({
  options: {
    classes: { type: "string", default: "200" },
    dim: { type: "string", default: "768" },
    epochs: { type: "string", default: "2" },
    tasks: { type: "string", default: "10" },
  },
});
const C = Number(values.classes);
const D = Number(values.dim);
const epochs = Number(values.epochs);
const tasks = Number(values.tasks);
const perTask = C / tasks;
if (!Number.isInteger(perTask)) throw new Error(`--classes ${C} is not a multiple of --tasks ${tasks}`);

function syntheticStats(): ClassStatistics {
  const rng = counterRng(7, 1);
  const distinct = 4;
  const bases: Float32Array[] = [];
  for (let k = 0; k < distinct; k++) {
    // Σ = V Vᵀ / r + 0.05·I + 1e-4·I with V [D, 64]: full rank, spread-out spectrum.
    const r = 64;
    const v = Float64Array.from({ length: D * r }, () => rng.nextFloat() * 2 - 1);
    const s = matmulABt(mat(D, r, v), mat(D, r, v)).data;
    const cov = new Float32Array(D * D);
    for (let i = 0; i < D * D; i++) cov[i] = s[i] / r + (i % (D + 1) === 0 ? 0.05 + 1e-4 : 0);
    bases.push(cov);
  }
  const means = Float64Array.from({ length: C * D }, () => rng.nextFloat() * 2 - 1);
  const covs = new Float32Array(C * D * D);
  for (let c = 0; c < C; c++) covs.set(bases[c % distinct], c * D * D);
  return { D, classes: C, means, covs };
}

function heads(): Head[] {
  const rng = counterRng(7, 2);
  return Array.from({ length: tasks }, () => ({
    classes: perTask,
    weight: Float32Array.from({ length: perTask * D }, () => (rng.nextFloat() * 2 - 1) / Math.sqrt(D)),
    bias: new Float32Array(perTask),
  }));
}

const stats = syntheticStats();
const hs = heads();
lapack();

/** Process CPU seconds: steadier than wall time on a shared machine (one BLAS thread by default). */
const cpuSeconds = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

const cholStart = performance.now();
const cholCpu = cpuSeconds();
for (let c = 0; c < C; c++) classSampler(stats, c, 1);
const choleskyS = (performance.now() - cholStart) / 1000;
const choleskyCpuS = cpuSeconds() - cholCpu;

const epochS: number[] = [];
const epochCpuS: number[] = [];
let last = performance.now();
let lastCpu = cpuSeconds();
const started = last;
const result = await alignClassifier(hs, stats, {
  task: tasks - 1,
  latestTaskSize: perTask,
  seed: 0,
  logitNorm: 0.1,
  epochs,
  onEpoch: ({ epoch, loss }) => {
    const now = performance.now();
    const cpu = cpuSeconds();
    epochS.push((now - last) / 1000);
    epochCpuS.push(cpu - lastCpu);
    last = now;
    lastCpu = cpu;
    console.log(
      `epoch ${epoch + 1}/${epochs}: ${epochS.at(-1)?.toFixed(2)} s wall, ${epochCpuS.at(-1)?.toFixed(2)} s CPU, loss ${loss.toFixed(4)}`,
    );
  },
});
const totalS = (performance.now() - started) / 1000;
const out = {
  date: new Date().toISOString(),
  machine: { cpus: availableParallelism(), model: cpus()[0]?.model, loadavg: loadavg() },
  blas: nativeStatus().description ?? `TypeScript (${nativeStatus().reason})`,
  linalgThreads: process.env.INFLORA_LINALG_THREADS ?? "1",
  classes: C,
  D,
  samplesPerClass: 256,
  batchSize: 256,
  epochs,
  choleskySeconds: choleskyS,
  choleskyCpuSeconds: choleskyCpuS,
  /** The first epoch's span also holds the factorisation of every class. */
  epochSeconds: epochS,
  epochCpuSeconds: epochCpuS,
  totalSeconds: totalS,
  loss: result.epochLoss,
};
console.log(
  `C=${C} D=${D}: Cholesky of all classes ${choleskyS.toFixed(2)} s wall, ${choleskyCpuS.toFixed(2)} s CPU; ` +
    `epochs ${epochS.map((s) => s.toFixed(2)).join(", ")} s wall, ${epochCpuS.map((s) => s.toFixed(2)).join(", ")} s CPU ` +
    `(the first includes the factorisation); total ${totalS.toFixed(2)} s`,
);
const here = dirname(fileURLToPath(import.meta.url));
mkdirSync(join(here, "results"), { recursive: true });
writeFileSync(join(here, "results", "alignment.json"), `${JSON.stringify(out, null, 2)}\n`);
