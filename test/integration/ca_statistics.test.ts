/**
 * Classifier alignment on the reference fixture under InfLoRA_CA1: the class statistics equal float64
 * statistics computed here, two-pass, from the worker's own features; earlier classes' rows are kept as
 * they were; the alignment's loss falls and metrics.json reports the figures before alignment; `inflora
 * eval` reproduces the run's figures although alignment retrained earlier heads. (Workers and resume:
 * ca_determinism.test.ts.)
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { evaluateRun, openRunData } from "../../cli/evaluate_run.js";
import { train } from "../../cli/train.js";
import { PROTOCOL_VERSION } from "../../common/protocol.js";
import { readCheckpoint, readClassStats } from "../../coordinator/checkpoint.js";
import type { RunMetrics } from "../../coordinator/evaluation.js";
import { batches } from "../../coordinator/plan.js";
import { RunDir } from "../../coordinator/run_dir.js";
import { WorkerEngine } from "../../worker/engine.js";
import { events, shortConfig } from "../helpers/distributed.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "inflora-ca-stats-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

mkdirSync(path.join(tmp, "cfg"));
const config = shortConfig(path.join(tmp, "cfg"), { model_name: "InfLoRA_CA1", init_epoch: 1, epochs: 1 });
const inProcess = path.join(tmp, "in-process");
const TASKS = 5;

beforeAll(async () => {
  await train({ config, out: inProcess, workers: 1, inProcess: true, resume: false });
}, 300_000);

/** Mean and unbiased covariance (+ the reference's float32 1e-4 ridge) of rows [n, D], two-pass in float64. */
function reference(features: Float32Array, D: number): { mean: Float64Array; cov: Float64Array } {
  const n = features.length / D;
  const mean = new Float64Array(D);
  for (let k = 0; k < n; k++) for (let r = 0; r < D; r++) mean[r] += features[k * D + r];
  for (let r = 0; r < D; r++) mean[r] /= n;
  const cov = new Float64Array(D * D);
  for (let k = 0; k < n; k++) {
    for (let r = 0; r < D; r++) {
      const a = features[k * D + r] - mean[r];
      for (let q = 0; q < D; q++) cov[r * D + q] += a * (features[k * D + q] - mean[q]);
    }
  }
  for (let r = 0; r < D; r++) {
    for (let q = 0; q < D; q++) cov[r * D + q] /= n - 1;
    cov[r * D + r] += Math.fround(1e-4);
  }
  return { mean, cov };
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

describe("classifier alignment's class statistics (InfLoRA_CA1, reference fixture)", () => {
  it("equal float64 statistics of the worker's own features, one class at a time; earlier rows are kept", async () => {
    const { run, data, plan } = await openRunData(inProcess);
    const D = run.model.embedDim;
    const dir = new RunDir(inProcess);
    const engine = new WorkerEngine({ name: "ca-statistics-test" });
    try {
      await engine.setup({
        runId: "ca-statistics-test",
        protocolVersion: PROTOCOL_VERSION,
        weightsPath: run.config.weights,
        weightsFingerprint: run.weightsSha256,
        model: run.model,
        data,
      });
      let earlier: Awaited<ReturnType<typeof readClassStats>> | undefined;
      for (let t = 0; t < TASKS; t++) {
        const stats = await readClassStats(dir.classStats(t));
        const task = plan.tasks[t];
        expect([stats.classes, stats.D]).toEqual([task.classEnd, D]);
        if (earlier) {
          expect(Buffer.from(stats.means.buffer, stats.means.byteOffset, earlier.means.byteLength)).toEqual(
            Buffer.from(earlier.means.buffer, earlier.means.byteOffset, earlier.means.byteLength),
          );
          expect(Buffer.from(stats.covs.buffer, stats.covs.byteOffset, earlier.covs.byteLength)).toEqual(
            Buffer.from(earlier.covs.buffer, earlier.covs.byteOffset, earlier.covs.byteLength),
          );
        }
        earlier = stats;
        const ck = await readCheckpoint(dir.checkpoint(t), { depth: run.model.depth, D });
        await engine.setTaskState({
          version: t + 1,
          task: t,
          finished: ck.adapters.map((a, s) => ({ task: s, ...a })),
          heads: [],
        });
        // The pass's own cut, so that the features are the very numbers the run reduced.
        const cut = batches(task.train, Math.ceil(run.config.eval_batch_size / run.config.micro_shards));
        const shards = cut.map((samples, index) => ({ index, split: "train" as const, samples }));
        const rows = await engine.evaluate({ stateVersion: t + 1, shards, output: "features" });
        const features = new Float32Array(task.train.length * D);
        let offset = 0;
        for (const r of rows) {
          features.set(r.logits, offset);
          offset += r.logits.length;
        }
        for (let c = task.classStart; c < task.classEnd; c++) {
          const mine = [...task.trainLabels.keys()].filter((k) => task.trainLabels[k] === c);
          const f = new Float32Array(mine.length * D);
          mine.forEach((k, j) => {
            f.set(features.subarray(k * D, (k + 1) * D), j * D);
          });
          const want = reference(f, D);
          const mean = stats.means.subarray(c * D, (c + 1) * D);
          const cov = stats.covs.subarray(c * D * D, (c + 1) * D * D);
          // Both are float32 roundings of float64 values that differ only by float64 rounding: one
          // float32 unit in the last place, plus a margin far below the next.
          for (let i = 0; i < D; i++) {
            const tol = 2 ** -23 * Math.abs(want.mean[i]) + 1e-12 * maxAbs(want.mean);
            expect(Math.abs(mean[i] - want.mean[i]), `μ[${c}][${i}]`).toBeLessThanOrEqual(tol);
          }
          const covScale = maxAbs(want.cov);
          for (let i = 0; i < D * D; i++) {
            const tol = 2 ** -23 * Math.abs(want.cov[i]) + 1e-9 * covScale;
            expect(Math.abs(cov[i] - want.cov[i]), `Σ[${c}][${i}]`).toBeLessThanOrEqual(tol);
          }
        }
      }
    } finally {
      await engine.close();
    }
  }, 120_000);

  it("the alignment's loss falls at every task after the first; metrics.json holds the figures before it", () => {
    const finished = events(inProcess).filter((e) => e.event === "alignment_finished");
    expect(finished.map((e) => e.task)).toEqual([1, 2, 3, 4]);
    // The mean loss of each epoch falls from the second epoch on. (The first can be lower: at task 1 an
    // epoch is only 8 steps, and SGD's momentum at lr 0.01 overshoots on the normalised logits before the
    // cosine schedule brings the rate down.) Over all aligned tasks the last epoch ends below the first.
    let first = 0;
    let last = 0;
    for (const e of finished) {
      const loss = e.epoch_loss as number[];
      expect(loss, `task ${e.task}`).toHaveLength(5);
      for (let k = 2; k < loss.length; k++)
        expect(loss[k], `task ${e.task}: ${loss}`).toBeLessThan(loss[k - 1]);
      first += loss[0];
      last += loss[4];
    }
    expect(last).toBeLessThan(first);
    const m: RunMetrics = JSON.parse(readFileSync(path.join(inProcess, "metrics.json"), "utf8"));
    const before = m.before_alignment!;
    expect(before.accuracy_matrix.map((r) => r.length)).toEqual([1, 2, 3, 4, 5]);
    expect(before.curve.cil).toHaveLength(TASKS);
    // Task 0 is not aligned: its figures before and after are the same evaluation.
    expect(before.accuracy_matrix[0]).toEqual(m.accuracy_matrix[0]);
    expect(before.curve.cil[0]).toBe(m.curve.cil[0]);
    // Alignment retrains the heads: the evaluations after it differ from those before somewhere.
    expect(before.accuracy_matrix.slice(1)).not.toEqual(m.accuracy_matrix.slice(1));
  });

  it("inflora eval reproduces the run's curves and matrix, each row with the heads of its own task", async () => {
    const r = await evaluateRun({ run: inProcess });
    expect(r.differences).toEqual([]);
  }, 120_000);
});
