/** The run directory's layout: where each file lives, and which tasks count as finished. */
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { type CheckpointState, writeCheckpoint } from "../../coordinator/checkpoint.js";
import { runMetrics } from "../../coordinator/evaluation.js";
import { mat } from "../../coordinator/linalg/matrix.js";
import { type ResumeCheck, RunDir } from "../../coordinator/run_dir.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "inflora-rundir-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("run directory", () => {
  it("names every file of the contract", () => {
    const d = new RunDir("/runs/r1");
    expect([d.runJson, d.metricsJson, d.eventsJsonl, d.splitManifest, d.progress]).toEqual([
      "/runs/r1/run.json",
      "/runs/r1/metrics.json",
      "/runs/r1/events.jsonl",
      "/runs/r1/split_manifest.json",
      "/runs/r1/checkpoints/progress.safetensors",
    ]);
    expect(d.checkpoint(3)).toBe("/runs/r1/checkpoints/task-03.safetensors");
    expect(d.predictions(12)).toBe("/runs/r1/predictions/task-12.safetensors");
    expect(RunDir.forSeed("/runs/r1", 7, 1).root).toBe("/runs/r1");
    expect(RunDir.forSeed("/runs/r1", 7, 2).root).toBe("/runs/r1/seed-7");
  });

  it("resumes after the last of an unbroken run of checkpoints from task 0", async () => {
    const d = new RunDir(path.join(tmp, "r"));
    d.create();
    expect(d.lastFinishedTask(5)).toBe(-1);
    for (const t of [0, 1, 3]) writeFileSync(d.checkpoint(t), "");
    writeFileSync(path.join(d.checkpoints, "notes.txt"), "");
    expect(d.finishedTasks()).toEqual([0, 1, 3]);
    expect(d.lastFinishedTask(5)).toBe(1);
    expect(d.lastFinishedTask(1)).toBe(0);
    expect(d.holdsRun()).toBe(false);
    await d.writeRunJson({ run_id: "abc" });
    expect(d.runId()).toBe("abc");
  });

  it("resumes past a damaged checkpoint to the newest intact one, but not past one of another config", async () => {
    const D = 2;
    const d = new RunDir(path.join(tmp, "damaged"));
    d.create();
    const want: ResumeCheck = { depth: 1, D, rank: 1, configSha256: "cfg", classOrder: [1, 0] };
    const adapter = {
      rank: 1,
      Bk: [new Float32Array(D)],
      Bv: [new Float32Array(D)],
      Ak: [new Float32Array(D)],
      Av: [new Float32Array(D)],
    };
    const head = { classes: 1, weight: new Float32Array(D), bias: new Float32Array(1) };
    const state = (task: number, configSha256 = "cfg"): CheckpointState => ({
      task,
      adapters: Array.from({ length: task + 1 }, () => adapter),
      heads: Array.from({ length: task + 1 }, () => head),
      memory: [{ basis: mat(D, 0), type: "remove" }],
      classOrder: [1, 0],
      configSha256,
    });
    for (const t of [0, 1, 2]) await writeCheckpoint(d.checkpoint(t), state(t), D);
    await d.writeMetrics(runMetrics([50, 50, 50], [50, 50, 50], [[50], [50, 50], [50, 50, 50]]));
    truncateSync(d.checkpoint(2), 100);
    const bytes = readFileSync(d.checkpoint(1));
    bytes[bytes.length - 1] ^= 1;
    writeFileSync(d.checkpoint(1), bytes);
    const r = await d.readResume(3, want);
    expect(r.last).toBe(0);
    expect(r.finished?.state.task).toBe(0);
    expect(r.damaged.map((x) => [x.file, x.fallback])).toEqual([
      ["checkpoints/task-02.safetensors", "resuming from task-01.safetensors"],
      ["checkpoints/task-01.safetensors", "resuming from task-00.safetensors"],
    ]);
    // Intact but written for another config: a refusal, not damage to pass over.
    await writeCheckpoint(d.checkpoint(2), state(2, "other"), D);
    await expect(d.readResume(3, want)).rejects.toThrow(/written for a different config/);
  });
});
