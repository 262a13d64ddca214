/**
 * `npm run check:gpu`: for anyone with a GPU. Prints the WebGPU adapter, runs the reference fixture on
 * the `webgpu` backend and compares it with the reference's expectations (the tolerances of
 * test/fixtures/reference/README.md), then measures ViT-B/16 and ViT-Ti/16 — the training step and the
 * covariance pass, as bench:step's workloads (bench/step_workloads.ts) run them: images/s and peak GPU
 * memory. On a software adapter (lavapipe, SwiftShader) the ViT sizes are skipped and it says so. Needs no
 * network. The last line sums it up:
 *
 *   gpu: adapter="…" fixture=ok|FAIL vit_b16=R vit_ti16=R      (R in images/s of the training step)
 *
 *   npm run check:gpu [-- --gpu N] [--steps S]
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import * as tf from "@tensorflow/tfjs-core";
import { modelById, WORKLOAD_LABELS, type Workload } from "../bench/step_spec.js";
import { buildBenchModel, microBatches, STEPS } from "../bench/step_workloads.js";
import { train } from "../cli/train.js";
import { configureLogging } from "../common/log.js";
import {
  compareCheckpoint,
  comparePredictions,
  EXPECTED_DIR,
  FIXTURE_CLASSES_PER_TASK,
  FIXTURE_DEPTH,
  FIXTURE_TASKS,
  REFERENCE_DIR,
  taskFile,
  tolerances,
} from "../test/helpers/reference_compare.js";
import { selectBackend } from "../worker/backend.js";
import { type BackendCounts, countBackendWork } from "../worker/backend_counters.js";
import { adapterLabel } from "../worker/webgpu_device.js";

const VIT_MODELS = ["vit_b16", "vit_ti16"] as const;
const WORKLOADS: readonly Workload[] = ["train", "covariance"];

const { values } = parseArgs({
  options: { gpu: { type: "string" }, steps: { type: "string", default: "3" } },
});
const gpu = values.gpu === undefined ? undefined : Number(values.gpu);
const steps = Number(values.steps);
if (!Number.isInteger(steps) || steps < 1)
  throw new Error(`--steps: expected a positive integer, got ${values.steps}`);

/** Every figure of every task against its tolerance; the failures, named. */
async function fixtureFailures(runDir: string): Promise<string[]> {
  const tol = tolerances();
  const failures: string[] = [];
  const worst = { bdist: 0, abrel: 0, headrel: 0, gpmdist: 0 };
  for (let t = 0; t < FIXTURE_TASKS; t++) {
    const f = await compareCheckpoint(
      path.join(runDir, "checkpoints", taskFile(t)),
      path.join(EXPECTED_DIR, "checkpoints", taskFile(t)),
      t,
      FIXTURE_DEPTH,
    );
    for (const k of ["bdist", "abrel", "headrel", "gpmdist"] as const) {
      worst[k] = Math.max(worst[k], f[k]);
      if (!(f[k] <= tol[k])) failures.push(`task ${t} ${k} ${f[k]} > ${tol[k]}`);
    }
    if (JSON.stringify(f.types) !== JSON.stringify(f.expectedTypes)) failures.push(`task ${t} DualGPM types`);
    if (JSON.stringify(f.widths) !== JSON.stringify(f.expectedWidths))
      failures.push(`task ${t} DualGPM widths`);
    const p = await comparePredictions(
      path.join(runDir, "predictions", taskFile(t)),
      path.join(EXPECTED_DIR, "predictions", taskFile(t)),
      tol.tie_rel,
      FIXTURE_CLASSES_PER_TASK,
    );
    if (!p.labelsEqual) failures.push(`task ${t} test labels differ`);
    for (const [label, agree] of [
      ["predictions", p.predAgree],
      ["predictions with task", p.predWithTaskAgree],
    ] as const) {
      if (!(agree >= tol.pred_agree))
        failures.push(`task ${t} ${label} agree ${agree}% < ${tol.pred_agree}%`);
    }
  }
  const ours = JSON.parse(readFileSync(path.join(runDir, "metrics.json"), "utf8"));
  const expected = JSON.parse(readFileSync(path.join(EXPECTED_DIR, "metrics.json"), "utf8"));
  const accOff = Math.max(
    ...(ours.accuracy_matrix as number[][]).flatMap((row, i) =>
      row.map((a, j) => Math.abs(a - expected.accuracy_matrix[i][j])),
    ),
  );
  if (!(accOff <= tol.acc)) failures.push(`accuracy matrix off by ${accOff} points > ${tol.acc}`);
  console.log(
    `fixture: worst Bdist ${worst.bdist.toExponential(1)} (tol ${tol.bdist}), ABrel ${worst.abrel.toExponential(1)} (${tol.abrel}), headRel ${worst.headrel.toExponential(1)} (${tol.headrel}), GPMdist ${worst.gpmdist.toExponential(1)} (${tol.gpmdist}), accuracies within ${accOff} points (${tol.acc})`,
  );
  return failures;
}

function gpuAllocatedBytes(): number | undefined {
  return (tf.memory() as tf.MemoryInfo & { numBytesAllocatedInGPU?: number }).numBytesAllocatedInGPU;
}

interface Measured {
  readonly imagesPerSec: number;
  /** GPU bytes tfjs holds after the steps: its buffer pool keeps what the biggest step needed. */
  readonly peakMiB?: number;
  /** One more step, counted (bench:step's counters): GPU dispatches and host readbacks. */
  readonly perStep: BackendCounts;
}

/** images/s of one workload at the spec's batch, after one warm-up step; GPU memory; dispatches per step. */
async function measure(id: string, workload: Workload): Promise<Measured> {
  const spec = modelById(id);
  const m = await buildBenchModel(spec);
  try {
    // The whole batch as one micro-batch: a GPU takes a micro-shard in one pass.
    const mbs = microBatches(m, spec.batch, spec.batch);
    const step = STEPS[workload];
    await step(m, mbs);
    const start = performance.now();
    for (let s = 0; s < steps; s++) await step(m, mbs);
    const seconds = (performance.now() - start) / 1000;
    const peak = gpuAllocatedBytes();
    const { counts } = await countBackendWork(() => step(m, mbs));
    return {
      imagesPerSec: (steps * spec.batch) / seconds,
      peakMiB: peak === undefined ? undefined : peak / 2 ** 20,
      perStep: counts,
    };
  } finally {
    m.model.dispose();
    tf.dispose([...m.BT, ...m.trainables.AkT, ...m.trainables.AvT, m.trainables.headW, m.trainables.headB]);
  }
}

// The run's own progress lines would bury the check's; INFLORA_LOG_LEVEL=info brings them back.
configureLogging({ level: process.env.INFLORA_LOG_LEVEL ?? "warn" });
const backend = await selectBackend({ backend: "webgpu", gpu });
const adapter = backend.adapter!;
console.log(
  `adapter: ${adapterLabel(adapter)} — vendor "${adapter.vendor}", architecture "${adapter.architecture}", device "${adapter.device}"`,
);

const tmp = mkdtempSync(path.join(os.tmpdir(), "inflora-check-gpu-"));
let fixture: "ok" | "FAIL" = "FAIL";
try {
  const t0 = performance.now();
  await train({
    config: path.join(REFERENCE_DIR, "tiny_config.json"),
    out: tmp,
    workers: 1,
    inProcess: true,
    resume: false,
    backend: "webgpu",
  });
  console.log(`fixture: 5 tasks on webgpu in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  const failures = await fixtureFailures(tmp);
  for (const f of failures) console.log(`fixture: FAIL ${f}`);
  fixture = failures.length === 0 ? "ok" : "FAIL";
} catch (err) {
  console.log(`fixture: FAIL (${(err as Error).message})`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

function report(id: string, workload: Workload, r: Measured): void {
  const memory = r.peakMiB === undefined ? "not reported" : `${r.peakMiB.toFixed(0)} MiB`;
  console.log(
    `${modelById(id).title}: ${WORKLOAD_LABELS[workload]} ${r.imagesPerSec.toFixed(2)} images/s, ` +
      `${r.perStep.dispatches} dispatches and ${r.perStep.readbacks} readbacks per step, peak GPU memory ${memory}`,
  );
}

const trainRate: Record<string, string> = {};
if (adapter.software) {
  console.log(
    `ViT-B/16 and ViT-Ti/16 skipped: ${adapterLabel(adapter)} is a software adapter, whose speed says nothing about a GPU's`,
  );
  for (const id of VIT_MODELS) trainRate[id] = "skipped";
  // The fixture-size model still shows the dispatch and readback counts, which carry over to a GPU.
  report("fixture", "train", await measure("fixture", "train"));
} else {
  for (const id of VIT_MODELS) {
    for (const workload of WORKLOADS) {
      const r = await measure(id, workload);
      if (workload === "train") trainRate[id] = r.imagesPerSec.toFixed(2);
      report(id, workload, r);
    }
  }
}
console.log(
  `gpu: adapter="${adapter.description || adapter.device}" fixture=${fixture} vit_b16=${trainRate.vit_b16} vit_ti16=${trainRate.vit_ti16}`,
);
process.exit(fixture === "ok" ? 0 : 1);
