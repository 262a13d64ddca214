/**
 * `inflora eval` on a short fixture run: it reproduces the run's own metrics from its checkpoints, on the
 * run's data and on a copy of it elsewhere, and refuses data with other classes.
 */
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { evaluateRun } from "../../cli/evaluate_run.js";
import { train } from "../../cli/train.js";
import { readSafetensors } from "../../common/safetensors.js";
import type { RunMetrics } from "../../coordinator/evaluation.js";

const ROOT = path.resolve(import.meta.dirname, "../..");
const tmp = mkdtempSync(path.join(os.tmpdir(), "inflora-eval-"));
const run = path.join(tmp, "run");
let dataPath = "";
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

beforeAll(async () => {
  const src = path.join(ROOT, "configs", "fixture_tiny.json");
  const cfg = JSON.parse(readFileSync(src, "utf8"));
  Object.assign(cfg, { init_epoch: 1, epochs: 1 });
  cfg.weights = path.resolve(path.dirname(src), cfg.weights);
  cfg.data_path = dataPath = path.resolve(path.dirname(src), cfg.data_path);
  const file = path.join(tmp, "fixture_short.json");
  writeFileSync(file, JSON.stringify(cfg));
  await train({ config: file, out: run, workers: 2, resume: false });
}, 300_000);

const own = () => JSON.parse(readFileSync(path.join(run, "metrics.json"), "utf8")) as RunMetrics;

describe("inflora eval", () => {
  it("reproduces the run's metrics (every row and curve) from the last checkpoint", async () => {
    const r = await evaluateRun({ run });
    expect(r.task).toBe(4);
    expect(r.differences).toEqual([]);
    expect(r.metrics).toEqual(own());
    const preds = await readSafetensors(path.join(run, "predictions", "task-04.safetensors"));
    const pred = Array.from(preds.tensors.get("pred")!.data as BigInt64Array, Number);
    expect(Array.from(r.tasks[4].evaluation.pred)).toEqual(pred);
  });

  it("--task 2 recomputes rows 0..2", async () => {
    const r = await evaluateRun({ run, task: 2 });
    const m = own();
    expect(r.tasks.map((t) => t.evaluation.perTask)).toEqual(m.accuracy_matrix.slice(0, 3));
    expect(r.metrics.curve.cil).toEqual(m.curve.cil.slice(0, 3));
    expect(r.differences).toEqual([]);
  });

  it("--data-path: a copy of the data elsewhere gives the same accuracies", async () => {
    const copy = path.join(tmp, "copy");
    cpSync(dataPath, copy, { recursive: true });
    const r = await evaluateRun({ run, dataPath: copy });
    expect(r.dataPath).toBe(copy);
    expect(r.metrics).toEqual(own());
  });

  it("--data-path with other classes is refused, naming the folder", async () => {
    const other = path.join(tmp, "other");
    mkdirSync(other);
    // The training records relabelled: byte 0 of every 3074-byte CIFAR-100 record is the coarse label,
    // byte 1 the fine label; fine labels 0..19 become 40..59, so the class list changes.
    for (const split of ["train.bin", "test.bin"]) {
      const bytes = readFileSync(path.join(dataPath, split));
      for (let at = 0; at < bytes.length; at += 3074) bytes[at + 1] += 40;
      writeFileSync(path.join(other, split), bytes);
    }
    await expect(evaluateRun({ run, dataPath: other })).rejects.toThrow(/other|classes/);
  });

  it("names a missing run directory", async () => {
    await expect(evaluateRun({ run: path.join(tmp, "nope") })).rejects.toMatchObject({ name: "RunDirError" });
  });
});
