/**
 * nats-server restarted in the middle of a run that takes its parameters over NATS (issue #15): while it is
 * down the workers do not get the published parameters, answer "stale params", and get them over gRPC;
 * once it is back, NATS carries them again. The run ends bit-identical to a clean one-worker run; the time
 * from the server going down to the first gRPC resend goes to the fault table.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { train } from "../../cli/train.js";
import { GrpcWorkerClient } from "../../coordinator/transport/grpc_client.js";
import {
  type ChildWorker,
  events,
  expectSameRun,
  shortConfig,
  startNatsWorkers,
  stopWorkers,
} from "../helpers/distributed.js";
import { recordFault } from "../helpers/fault_table.js";
import { type NatsTestServer, startNatsServer } from "../helpers/nats_server.js";

const LEASE_MS = 6_000;
/** Training steps the server stays down for. */
const STEPS_DOWN = 4;

const tmp = mkdtempSync(path.join(os.tmpdir(), "inflora-nats-restart-"));
const config = shortConfig(tmp);
const reference = path.join(tmp, "reference");
const same = (cond: boolean, what: string) => expect(cond, what).toBe(true);
const spawned: ChildWorker[] = [];
let server: NatsTestServer | undefined;

beforeAll(async () => {
  await train({ config, out: reference, workers: 1, inProcess: true, resume: false });
}, 300_000);

afterAll(async () => {
  stopWorkers(spawned);
  await server?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

describe("NATS restart under a parameter broadcast", () => {
  it("nats-server restarted mid-run: the steps in between take their parameters over gRPC; bit-identical", async () => {
    server = await startNatsServer();
    const nats = server;
    spawned.push(...(await startNatsWorkers(nats.url, 2, LEASE_MS)));
    // The coordinator's clients (on its main thread: transportThreads 0) count the steps whose parameters
    // went by digest and those a worker then needed resent over gRPC.
    const setups = vi.spyOn(GrpcWorkerClient.prototype, "setup");
    const byDigest = () => {
      const total = { sent: 0, resent: 0 };
      for (const c of new Set(setups.mock.contexts as GrpcWorkerClient[])) {
        total.sent += c.paramsByDigest.sent;
        total.resent += c.paramsByDigest.resent;
      }
      return total;
    };

    const out = path.join(tmp, "restart");
    let downAt: number | undefined;
    let fallbackAt: number | undefined;
    let backAt: number | undefined;
    let atBack = { sent: 0, resent: 0 };
    let stepsWhileDown = 0;
    let restarting: Promise<void> | undefined;
    const startRestart = () => {
      const before = byDigest().resent;
      restarting = (async () => {
        await nats.restart({
          // Down for several training steps, however fast or slow this machine runs them.
          downUntil: async () => {
            downAt = Date.now();
            const deadline = Date.now() + 30_000;
            while (stepsWhileDown < STEPS_DOWN && Date.now() < deadline) {
              if (fallbackAt === undefined && byDigest().resent > before) fallbackAt = Date.now();
              await new Promise((r) => setTimeout(r, 20));
            }
          },
        });
        // Clients reconnect within a second of the server being back; count from then on.
        await new Promise((r) => setTimeout(r, 2_000));
        atBack = byDigest();
        backAt = Date.now();
      })();
    };
    await train({
      config,
      out,
      nats: nats.url,
      transportThreads: 0,
      resume: false,
      onStep: ({ task, step }) => {
        if (restarting === undefined && task === 1 && step === 0) startRestart();
        if (downAt !== undefined && backAt === undefined) stepsWhileDown++;
      },
    });
    await restarting;
    expectSameRun(reference, out, same);

    const ev = events(out);
    const joined = ev.filter((e) => e.event === "worker_joined");
    expect(joined.length).toBeGreaterThanOrEqual(2);
    for (const e of joined) expect(e.params_over_nats, `${e.worker} takes parameters from NATS`).toBe(true);
    expect(ev.filter((e) => e.event === "worker_failed" || e.event === "worker_left")).toEqual([]);
    expect(stepsWhileDown, "steps ran while the server was down").toBeGreaterThanOrEqual(STEPS_DOWN);
    expect(fallbackAt, "a step took its parameters over gRPC while NATS was down").toBeDefined();
    // Once the server is back, NATS carries them again: steps by digest that needed no resend.
    const end = byDigest();
    const viaNatsAfter = end.sent - atBack.sent - (end.resent - atBack.resent);
    expect(viaNatsAfter, "parameters taken from NATS after the restart").toBeGreaterThan(0);
    recordFault({
      fault: "nats-server restarted mid-run under the parameter broadcast",
      tried: 1,
      survived: 1,
      bitIdentical: 1,
      detectionMs: fallbackAt! - downAt!,
      detail: `down ${stepsWhileDown} steps, parameters resent over gRPC meanwhile; NATS carried them again after`,
    });
  }, 110_000);
});
