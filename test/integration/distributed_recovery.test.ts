/**
 * Recovery over real processes: the coordinator killed with SIGKILL mid-task (its local workers must not
 * outlive it) and resumed with `--resume`, and a worker that joins mid-run through NATS discovery. Both
 * runs end bit-identical to a fault-free one.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { train } from "../../cli/train.js";
import {
  type ChildWorker,
  events,
  expectSameRun,
  MAIN,
  shortConfig,
  startWorker,
  stopWorkers,
  within,
} from "../helpers/distributed.js";
import { recordFault } from "../helpers/fault_table.js";
import { type NatsTestServer, startNatsServer } from "../helpers/nats_server.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "inflora-recovery-"));
const config = shortConfig(tmp);
const reference = path.join(tmp, "reference");
const spawned: ChildWorker[] = [];
let nats: NatsTestServer | undefined;
const same = (cond: boolean, what: string) => expect(cond, what).toBe(true);
const TSX = createRequire(import.meta.url).resolve("tsx");

beforeAll(async () => {
  await train({ config, out: reference, workers: 1, inProcess: true, resume: false });
}, 300_000);

afterAll(async () => {
  stopWorkers(spawned);
  await nats?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until(what: string, cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("recovery", () => {
  it("a coordinator killed with SIGKILL mid-task leaves no workers behind and resumes bit-identically", async () => {
    const out = path.join(tmp, "killed-coordinator");
    const child = spawn(
      process.execPath,
      ["--import", TSX, MAIN, "train", "--config", config, "--out", out, "--workers", "2"],
      {
        stdio: ["ignore", "ignore", "pipe"],
        env: { ...process.env, INFLORA_LOG_LEVEL: "info" },
      },
    );
    let stderr = "";
    child.stderr!.on("data", (d) => {
      stderr += d;
    });
    const progressed = () =>
      existsSync(path.join(out, "events.jsonl")) &&
      events(out).some((e) => e.event === "epoch_finished" && e.task === 1 && e.epoch === 0);
    await until("task 1 to finish its first epoch", progressed, 240_000);
    const pids = [...stderr.matchAll(/\(pid (\d+)\)/g)].map((m) => Number(m[1]));
    expect(pids).toHaveLength(2);
    const killedAt = Date.now();
    child.kill("SIGKILL");
    await until(
      "the local workers to exit after their coordinator",
      () => pids.every((p) => !alive(p)),
      15_000,
    );
    const orphansGoneMs = Date.now() - killedAt;
    expect(existsSync(path.join(out, "checkpoints", "progress.safetensors"))).toBe(true);
    expect(existsSync(path.join(out, "checkpoints", "task-01.safetensors"))).toBe(false);
    await train({ config, out, workers: 2, resume: true });
    expectSameRun(reference, out, same);
    const runIds = new Set(events(out).map((e) => e.run));
    expect(runIds.size, "the resumed run keeps its id").toBe(1);
    expect(readFileSync(path.join(out, "events.jsonl"), "utf8")).toMatch(/"event":"run_finished"/);
    recordFault({
      fault: "coordinator killed (SIGKILL) mid-task, then --resume",
      tried: 1,
      survived: 1,
      bitIdentical: 1,
      detectionMs: orphansGoneMs,
      detail: "time until its local workers exited by themselves; resumed from the progress checkpoint",
    });
  }, 400_000);

  it("a worker that joins mid-run through NATS is admitted at a step boundary and used", async () => {
    nats = await startNatsServer();
    const url = nats.url;
    const first = await startWorker(["--nats", url, "--name", "first", "--lease-ms", "3000"]);
    spawned.push(first);
    const out = path.join(tmp, "join");
    let joining: Promise<ChildWorker> | undefined;
    await train({
      config,
      out,
      nats: url,
      resume: false,
      onStep: ({ task, step }) => {
        if (!joining && task === 1 && step === 0) {
          joining = startWorker(["--nats", url, "--name", "second", "--lease-ms", "3000"]);
          // The next step waits until the newcomer holds its lease (a process takes seconds to start);
          // the step boundary after that admits it.
          return within(
            joining.then((w) => {
              spawned.push(w);
              return w.leased;
            }),
            60_000,
          ).then(() => undefined);
        }
      },
    });
    expectSameRun(reference, out, same);
    const ev = events(out);
    const joined = ev.filter((e) => e.event === "worker_joined").map((e) => e.worker);
    expect(joined).toContain("first");
    expect(joined).toContain("second");
    // Both took the coordinator's per-step parameters from its NATS publish, and the run is still exact.
    for (const e of ev.filter((x) => x.event === "worker_joined")) expect(e.params_over_nats).toBe(true);
    const usedBoth = ev.some((e) => e.event === "epoch_finished" && e.workers === 2);
    expect(usedBoth, "an epoch ran on both workers").toBe(true);
  }, 400_000);
});
