/**
 * Faults during a run over real worker processes and gRPC: a worker killed with SIGKILL mid-task, a
 * worker that answers NaN or wrongly shaped gradients, and one that hangs past its deadline. Each time
 * the shards move to the healthy worker within the same step, the offender is reported (quarantined
 * when its payload was malformed), and the run finishes bit-identical to a fault-free one.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { train } from "../../cli/train.js";
import {
  type ChildWorker,
  events,
  expectSameRun,
  forkWorker,
  shortConfig,
  startWorker,
  stopWorkers,
} from "../helpers/distributed.js";
import { recordFault } from "../helpers/fault_table.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "inflora-faults-"));
const config = shortConfig(tmp);
const reference = path.join(tmp, "reference");
const spawned: ChildWorker[] = [];
const same = (cond: boolean, what: string) => expect(cond, what).toBe(true);
const MISBEHAVING = path.resolve(import.meta.dirname, "../helpers/misbehaving_worker.ts");

/** Milliseconds from `since` (epoch ms) to the run's first worker_failed event. */
function failedAfter(out: string, since: number): number {
  const e = events(out).find((x) => x.event === "worker_failed");
  return Date.parse(String(e?.time)) - since;
}

beforeAll(async () => {
  await train({ config, out: reference, workers: 1, inProcess: true, resume: false });
}, 300_000);

afterAll(() => {
  stopWorkers(spawned);
  rmSync(tmp, { recursive: true, force: true });
});

describe("worker faults", () => {
  it("a worker killed with SIGKILL mid-task: its shards are redone, the run is bit-identical", async () => {
    const workers = await Promise.all([startWorker(), startWorker()]);
    spawned.push(...workers);
    const out = path.join(tmp, "killed");
    let killed = false;
    let killedAt = 0;
    await train({
      config,
      out,
      workerAddresses: workers.map((w) => w.address),
      resume: false,
      onStep: ({ task, step }) => {
        if (!killed && task === 1 && step === 1) {
          killed = true;
          killedAt = Date.now();
          workers[0].child.kill("SIGKILL");
        }
      },
    });
    expect(killed).toBe(true);
    expectSameRun(reference, out, same);
    const failed = events(out).filter((e) => e.event === "worker_failed");
    expect(failed.length).toBeGreaterThanOrEqual(1);
    expect(failed[0].worker).toBe("static-0");
    recordFault({
      fault: "worker killed (SIGKILL) mid-task",
      tried: 1,
      survived: 1,
      bitIdentical: 1,
      // The event's clock has millisecond steps; the kill and the failure can share one.
      detectionMs: Math.max(0, failedAfter(out, killedAt)),
      detail: "its call fails UNAVAILABLE; shards redone on the other worker within the step",
    });
  }, 300_000);

  for (const mode of ["nan", "shape"] as const) {
    it(`a worker answering ${mode === "nan" ? "NaN gradients" : "wrongly shaped gradients"} is quarantined and the run is bit-identical`, async () => {
      const good = await startWorker();
      const bad = await forkWorker(MISBEHAVING, [], { MISBEHAVE: mode, GOOD_STEPS: "3" });
      spawned.push(good, bad);
      const out = path.join(tmp, `malformed-${mode}`);
      // NaN through two transport threads (the error's class crosses the thread boundary), shapes without.
      const transportThreads = mode === "nan" ? 2 : 0;
      await train({
        config,
        out,
        workerAddresses: [bad.address, good.address],
        transportThreads,
        resume: false,
      });
      expectSameRun(reference, out, same);
      const failed = events(out).filter((e) => e.event === "worker_failed");
      expect(failed).toHaveLength(1);
      expect(failed[0].worker).toBe("static-0");
      expect(failed[0].status).toBe("quarantined");
      expect(String(failed[0].reason)).toMatch(mode === "nan" ? /finite|NaN/i : /length|shape|expected/i);
      recordFault({
        fault: mode === "nan" ? "worker answers NaN gradients" : "worker answers wrongly shaped gradients",
        tried: 1,
        survived: 1,
        bitIdentical: 1,
        // Not timed: the reply check refuses the reply that carries it, as it arrives.
        detectionMs: null,
        detail: "refused by the reply check on arrival; the worker quarantined, its shards redone",
      });
    }, 300_000);
  }

  it("a worker that hangs past its deadline loses its shards to the others (clients on transport threads)", async () => {
    const good = await startWorker();
    const bad = await forkWorker(MISBEHAVING, [], { MISBEHAVE: "hang", GOOD_STEPS: "2" });
    spawned.push(good, bad);
    const out = path.join(tmp, "hang");
    await train({
      config,
      out,
      workerAddresses: [bad.address, good.address],
      resume: false,
      callTimeoutMs: 4_000,
      transportThreads: 2,
      // The deadline path: with speculation on, a copy of the hung block wins long before the deadline
      // and the hung call is cancelled (test/integration/distributed_stragglers.test.ts covers that).
      speculation: false,
    });
    expectSameRun(reference, out, same);
    const failed = events(out).filter((e) => e.event === "worker_failed");
    expect(failed.length).toBeGreaterThanOrEqual(1);
    expect(String(failed[0].reason)).toMatch(/deadline|DEADLINE/i);
    recordFault({
      fault: "worker hangs past its call deadline (speculation off)",
      tried: 1,
      survived: 1,
      bitIdentical: 1,
      // When the hang began is the worker's secret: the failure comes at the call's deadline by design.
      detectionMs: null,
      detail:
        "failed at its call deadline (4 s here, 10 min by default); with speculation on a copy wins first",
    });
  }, 300_000);
});
