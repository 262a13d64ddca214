/**
 * The whole continual-learning loop on the reference fixture (test/fixtures/reference) against the
 * values of an independent PyTorch implementation, within the tolerances of its README; and the same run
 * from the .npz weights and the PNG folder, which must give the same numbers.
 */
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { train } from "../../cli/train.js";
import { readSafetensors } from "../../common/safetensors.js";
import type { RunMetrics } from "../../coordinator/evaluation.js";
import { comparePredictions, EXPECTED_DIR, REFERENCE_DIR, tolerances } from "../helpers/reference_compare.js";
import {
  expectCheckpointsMatchReference,
  expectPredictionsMatchReference,
} from "../helpers/reference_expect.js";

const TASKS = 5;
const DEPTH = 3;
const D = 48;
const CLASSES_PER_TASK = 4;
const name = (t: number) => `task-${String(t).padStart(2, "0")}.safetensors`;

const tmp = mkdtempSync(path.join(os.tmpdir(), "inflora-fixture-"));
const runBin = path.join(tmp, "bin");
const runNpz = path.join(tmp, "npz-folder");
const tol = tolerances();
const expectedMetrics: RunMetrics = JSON.parse(readFileSync(path.join(EXPECTED_DIR, "metrics.json"), "utf8"));

beforeAll(async () => {
  await train({
    config: path.join(REFERENCE_DIR, "tiny_config.json"),
    out: runBin,
    workers: 1,
    inProcess: true,
    resume: false,
  });
  // The same config from the Google-format weights and the PNG folder.
  const cfg = JSON.parse(readFileSync(path.join(REFERENCE_DIR, "tiny_config.json"), "utf8"));
  cfg.weights = path.join(REFERENCE_DIR, "tiny_vit.npz");
  cfg.dataset = "folder";
  cfg.data_path = path.join(REFERENCE_DIR, "folder");
  const cfgFile = path.join(tmp, "npz_folder_config.json");
  writeFileSync(cfgFile, JSON.stringify(cfg, null, 1));
  await train({ config: cfgFile, out: runNpz, workers: 1, inProcess: true, resume: false });
}, 600_000);

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The last start of a run in `dir`: where it entered the phase machine, and the phases of that task. */
function resumedPhases(dir: string) {
  const events = readFileSync(path.join(dir, "events.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  const start = events.map((e) => e.event).lastIndexOf("run_started");
  const { resumed_at_task, entry_phase } = events[start];
  const phases = events
    .slice(start)
    .filter((e) => e.event === "phase_started" && e.task === resumed_at_task)
    .map((e) => e.phase);
  return { entry: { resumed_at_task, entry_phase }, phases };
}

describe("the reference fixture run", () => {
  it("matches every checkpoint within the reference tolerances", async () => {
    await expectCheckpointsMatchReference(runBin);
  });

  it("predicts what the reference predicts on the decidable samples", async () => {
    await expectPredictionsMatchReference(runBin);
  });

  it("has accuracy curves and matrix within the tolerance", async () => {
    const ours: RunMetrics = JSON.parse(readFileSync(path.join(runBin, "metrics.json"), "utf8"));
    for (let t = 0; t < TASKS; t++) {
      const p = await comparePredictions(
        path.join(runBin, "predictions", name(t)),
        path.join(EXPECTED_DIR, "predictions", name(t)),
        tol.tie_rel,
        CLASSES_PER_TASK,
      );
      const n = 40 * (t + 1);
      const allowed = (setSize: number, moved: number) =>
        Math.max(tol.acc, 100 / setSize) + (100 * moved) / setSize + 1e-9;
      expect(Math.abs(ours.curve.cil[t] - expectedMetrics.curve.cil[t])).toBeLessThanOrEqual(
        allowed(n, p.movedTiesTotal),
      );
      expect(Math.abs(ours.curve.with_task[t] - expectedMetrics.curve.with_task[t])).toBeLessThanOrEqual(
        allowed(n, p.movedTiesWithTaskTotal),
      );
      for (let s = 0; s <= t; s++) {
        expect(
          Math.abs(ours.accuracy_matrix[t][s] - expectedMetrics.accuracy_matrix[t][s]),
        ).toBeLessThanOrEqual(allowed(40, p.movedTiesPerTask[s]));
      }
    }
  });

  it("writes checkpoints, predictions and metrics in the contract's format", async () => {
    for (let t = 0; t < TASKS; t++) {
      const ours = await readSafetensors(path.join(runBin, "checkpoints", name(t)));
      const ref = await readSafetensors(path.join(EXPECTED_DIR, "checkpoints", name(t)));
      const describe = (f: typeof ours) =>
        [...f.tensors]
          .filter(([n]) => !n.startsWith("dualgpm."))
          .map(([n, x]) => `${n}:${x.dtype}:[${x.shape}]`)
          .sort();
      expect(describe(ours)).toEqual(describe(ref));
      for (let i = 0; i < DEPTH; i++) {
        const b = ours.tensors.get(`dualgpm.${i}.basis`)!;
        expect(b.dtype).toBe("F64");
        expect(b.shape[0]).toBe(D);
      }
      expect(ours.metadata.format).toBe("inflora-checkpoint/1");
      expect(ours.metadata.task).toBe(String(t));
      expect(ours.metadata.class_order).toBe(JSON.stringify(JSON.parse(ref.metadata.class_order)));
      expect(ours.metadata.config_sha256).toBe(ref.metadata.config_sha256);
      const pred = await readSafetensors(path.join(runBin, "predictions", name(t)));
      const predRef = await readSafetensors(path.join(EXPECTED_DIR, "predictions", name(t)));
      expect([...pred.tensors].map(([n, x]) => `${n}:${x.dtype}:[${x.shape}]`).sort()).toEqual(
        [...predRef.tensors].map(([n, x]) => `${n}:${x.dtype}:[${x.shape}]`).sort(),
      );
      expect(pred.metadata.task).toBe(String(t));
    }
    const metrics: RunMetrics = JSON.parse(readFileSync(path.join(runBin, "metrics.json"), "utf8"));
    expect(Object.keys(metrics).sort()).toEqual(Object.keys(expectedMetrics).sort());
    // Metrics are consistent with the predictions written next to them.
    for (let t = 0; t < TASKS; t++) {
      const pred = await readSafetensors(path.join(runBin, "predictions", name(t)));
      const labels = Array.from(pred.tensors.get("labels")!.data as BigInt64Array, Number);
      const p = Array.from(pred.tensors.get("pred")!.data as BigInt64Array, Number);
      const correct = p.filter((v, i) => v === labels[i]).length;
      expect(metrics.curve.cil[t]).toBeCloseTo((100 * correct) / labels.length, 2);
    }
    const mean = metrics.curve.cil.reduce((a, b) => a + b, 0) / TASKS;
    expect(metrics.average_accuracy).toBeCloseTo(mean, 10);
    expect(metrics.final_accuracy).toBe(metrics.curve.cil[TASKS - 1]);
    const events = readFileSync(path.join(runBin, "events.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(events.filter((e) => e.event === "task_finished")).toHaveLength(TASKS);
    expect(events.at(-1).event).toBe("run_finished");
  });

  it("resumes after the last finished task and reproduces the uninterrupted run exactly", async () => {
    const runResume = path.join(tmp, "resume");
    cpSync(runBin, runResume, { recursive: true });
    for (const t of [3, 4]) {
      rmSync(path.join(runResume, "checkpoints", name(t)));
      rmSync(path.join(runResume, "predictions", name(t)));
    }
    await expect(
      train({
        config: path.join(REFERENCE_DIR, "tiny_config.json"),
        out: runResume,
        workers: 1,
        inProcess: true,
        resume: false,
      }),
    ).rejects.toThrow(/already holds a run; pass --resume/);
    await train({
      config: path.join(REFERENCE_DIR, "tiny_config.json"),
      out: runResume,
      workers: 1,
      inProcess: true,
      resume: true,
    });
    expect(resumedPhases(runResume)).toEqual({
      entry: { resumed_at_task: 3, entry_phase: "COVARIANCE_PRE" },
      phases: ["COVARIANCE_PRE", "DESIGN", "TRAIN", "COVARIANCE_POST", "DUALGPM", "EVAL", "CHECKPOINT"],
    });
    expect(readFileSync(path.join(runResume, "metrics.json"), "utf8")).toBe(
      readFileSync(path.join(runBin, "metrics.json"), "utf8"),
    );
    for (const t of [3, 4]) {
      for (const dir of ["checkpoints", "predictions"]) {
        expect(
          readFileSync(path.join(runResume, dir, name(t))).equals(
            readFileSync(path.join(runBin, dir, name(t))),
          ),
          `${dir}/${name(t)}`,
        ).toBe(true);
      }
    }
  }, 300_000);

  it("continues mid-task after the coordinator dies and reproduces the uninterrupted run exactly", async () => {
    const runCrash = path.join(tmp, "crash");
    const config = path.join(REFERENCE_DIR, "tiny_config.json");
    const crash = new Error("simulated coordinator crash");
    await expect(
      train({
        config,
        out: runCrash,
        workers: 1,
        inProcess: true,
        resume: false,
        onStep: ({ task, epoch, step }) => {
          if (task === 1 && epoch === 3 && step === 2) throw crash;
        },
      }),
    ).rejects.toBe(crash);
    expect(readdirSync(path.join(runCrash, "checkpoints")).sort()).toEqual(["progress.safetensors", name(0)]);
    await train({ config, out: runCrash, workers: 1, inProcess: true, resume: true });
    // B was designed before the crash and is in the progress state: the machine enters at TRAIN, visibly.
    expect(resumedPhases(runCrash)).toEqual({
      entry: { resumed_at_task: 1, entry_phase: "TRAIN" },
      phases: ["TRAIN", "COVARIANCE_POST", "DUALGPM", "EVAL", "CHECKPOINT"],
    });
    expect(readdirSync(path.join(runCrash, "checkpoints")).sort()).toEqual([0, 1, 2, 3, 4].map(name));
    expect(readFileSync(path.join(runCrash, "metrics.json"), "utf8")).toBe(
      readFileSync(path.join(runBin, "metrics.json"), "utf8"),
    );
    for (let t = 0; t < TASKS; t++) {
      for (const dir of ["checkpoints", "predictions"]) {
        expect(
          readFileSync(path.join(runCrash, dir, name(t))).equals(
            readFileSync(path.join(runBin, dir, name(t))),
          ),
          `${dir}/${name(t)}`,
        ).toBe(true);
      }
    }
  }, 300_000);

  it("gives the same numbers from the .npz weights and the PNG folder", async () => {
    const a: RunMetrics = JSON.parse(readFileSync(path.join(runBin, "metrics.json"), "utf8"));
    const b: RunMetrics = JSON.parse(readFileSync(path.join(runNpz, "metrics.json"), "utf8"));
    expect(b).toEqual(a);
    for (let t = 0; t < TASKS; t++) {
      for (const dir of ["checkpoints", "predictions"]) {
        const x = await readSafetensors(path.join(runBin, dir, name(t)));
        const y = await readSafetensors(path.join(runNpz, dir, name(t)));
        expect([...y.tensors.keys()].sort()).toEqual([...x.tensors.keys()].sort());
        for (const [n, tx] of x.tensors) {
          expect(
            Buffer.from(
              y.tensors.get(n)!.data.buffer,
              y.tensors.get(n)!.data.byteOffset,
              y.tensors.get(n)!.data.byteLength,
            ).equals(Buffer.from(tx.data.buffer, tx.data.byteOffset, tx.data.byteLength)),
            `${dir}/${name(t)} ${n}`,
          ).toBe(true);
        }
      }
    }
  });
});
