/**
 * Classifier alignment on the reference fixture under InfLoRA_CA (plain cross-entropy on CIFAR-100): three
 * gRPC worker processes, and one in-process worker whose coordinator dies in task 2 and is resumed from
 * the checkpoint after task 1, give bit-identical runs, class statistics included.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { train } from "../../cli/train.js";
import { events, expectSameRun, shortConfig } from "../helpers/distributed.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "inflora-ca-determinism-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const same = (cond: boolean, what: string) => expect(cond, what).toBe(true);

mkdirSync(path.join(tmp, "cfg"));
const config = shortConfig(path.join(tmp, "cfg"), { model_name: "InfLoRA_CA", init_epoch: 1, epochs: 1 });

describe("classifier alignment across workers and a resume (InfLoRA_CA, reference fixture)", () => {
  it("three gRPC workers and a resumed in-process run give bit-identical runs", async () => {
    const three = path.join(tmp, "three");
    const resumed = path.join(tmp, "resumed");
    await train({ config, out: three, workers: 3, transportThreads: 0, resume: false });
    const crash = new Error("simulated coordinator crash");
    await expect(
      train({
        config,
        out: resumed,
        workers: 1,
        inProcess: true,
        resume: false,
        onStep: ({ task, step }) => {
          if (task === 2 && step === 0) throw crash;
        },
      }),
    ).rejects.toBe(crash);
    expect(readdirSync(path.join(resumed, "class_stats")).sort()).toEqual([
      "task-00.safetensors",
      "task-01.safetensors",
    ]);
    await train({ config, out: resumed, workers: 1, inProcess: true, resume: true });
    const entry = events(resumed).filter((e) => e.event === "run_started")[1];
    expect(entry).toMatchObject({ resumed_at_task: 2, entry_phase: "COVARIANCE_PRE" });
    expectSameRun(three, resumed, same);
    // The alignment's loss (plain cross-entropy here) falls at every aligned task.
    for (const e of events(three).filter((x) => x.event === "alignment_finished")) {
      const loss = e.epoch_loss as number[];
      expect(loss.at(-1)!, `task ${e.task}: ${loss}`).toBeLessThan(loss[0]);
    }
  }, 300_000);
});
