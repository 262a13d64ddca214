/** The run directory's layout: where each file lives, and which tasks count as finished. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { RunDir } from "../../coordinator/run_dir.js";

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
});
