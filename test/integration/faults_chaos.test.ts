/**
 * The chaos run (issue #15): the tiny fixture on four workers found through NATS leases, one of them in its
 * own network namespace, while a schedule drawn from a fixed seed kills a worker (and starts a replacement),
 * partitions the namespaced one and restores its link, slows one worker (SIGSTOP for less than the
 * keepalive timeout, then SIGCONT), hangs another past it, and restarts nats-server — the parameters
 * then go over gRPC. The run must finish bit-identical to a clean one-worker run.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { train } from "../../cli/train.js";
import type { RunEvent } from "../../coordinator/events.js";
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
import { createNetns, type Netns, removeAllNetns, spawnInNetns } from "../helpers/netns.js";
import { mulberry32 } from "../helpers/tiny_vit.js";

const SEED = 15;
const TOKEN = "chaos-test-token";
const LEASE_MS = 6_000;
const KEEPALIVE = { timeMs: 2_000, timeoutMs: 3_000 };
/** Less than the keepalive window: slow, not dead. */
const SLOW_MS = 1_500;
/** More than the keepalive window: a hang the coordinator must notice. */
const HANG_MS = 8_000;
/** The fixture's run: 5 tasks, 2 epochs of 5 steps. */
const STEPS = 50;

const tmp = mkdtempSync(path.join(os.tmpdir(), "inflora-chaos-"));
const config = shortConfig(tmp);
const reference = path.join(tmp, "reference");
const same = (cond: boolean, what: string) => expect(cond, what).toBe(true);
const spawned: ChildWorker[] = [];
let nats: NatsTestServer | undefined;
let ns: Netns | undefined;

beforeAll(async () => {
  await train({ config, out: reference, workers: 1, inProcess: true, resume: false });
}, 300_000);

afterAll(async () => {
  stopWorkers(spawned);
  await nats?.stop();
  removeAllNetns();
  rmSync(tmp, { recursive: true, force: true });
});

type Action = "kill" | "partition" | "restore" | "slow" | "hang" | "restart-nats";

/** Which global training step each action follows: one per fifth of the run, jittered by the seed. */
function schedule(seed: number): Map<number, Action> {
  // A seeded generator, so the schedule is the same on every run.
  const next = mulberry32(seed);
  const order: Action[] = ["kill", "partition", "slow", "restart-nats", "hang"];
  const plan = new Map<number, Action>();
  order.forEach((a, k) => {
    const at = 3 + k * 9 + Math.floor(next() * 4);
    plan.set(at, a);
  });
  // A follow-up a few steps later: the link back. (The killed worker's replacement starts with the kill:
  // a new process takes seconds to come up, and it must join before the run ends.)
  const after = (a: Action, gap: number, b: Action) => {
    const at = [...plan].find(([, x]) => x === a)![0] + gap;
    plan.set(at, b);
  };
  after("partition", 5, "restore");
  return plan;
}

describe("chaos", () => {
  it("kills, partitions, slows, hangs and a NATS restart on 4 workers: bit-identical to 1 worker", async () => {
    const plan = schedule(SEED);
    expect(Math.max(...plan.keys())).toBeLessThan(STEPS);
    nats = await startNatsServer({ listen: "0.0.0.0" });
    const server = nats;
    ns = createNetns();
    const link = ns.links[0];
    const env = { INFLORA_TOKEN: TOKEN };
    const lease = (name: string, url = server.url) => [
      "--nats",
      url,
      "--name",
      name,
      "--lease-ms",
      String(LEASE_MS),
    ];
    const [isolated, killed, slowed, hung] = await Promise.all([
      spawnInNetns(
        ns,
        MAIN,
        [
          "worker",
          "--listen",
          `${link.nsAddress}:0`,
          ...lease("w0", `nats://${link.hostAddress}:${server.port}`),
        ],
        env,
      ),
      startWorker(lease("w1"), env),
      startWorker(lease("w2"), env),
      startWorker(lease("w3"), env),
    ]);
    spawned.push(isolated, killed, slowed, hung);

    const injected: Array<{ action: Action; at: number; worker?: string }> = [];
    const detections: number[] = [];
    const pending: Promise<unknown>[] = [];
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    let step = 0;
    let hold: Promise<void> | undefined;
    const stepsSince = (n: number) => step - n;

    const act = (action: Action) => {
      const at = Date.now();
      const note = (worker?: string) => injected.push({ action, at, worker });
      switch (action) {
        case "kill": {
          killed.child.kill("SIGKILL");
          // The replacement, as a supervisor would start one; the next step waits until it holds its lease
          // (a process takes seconds to start, and the run would otherwise end before it joins).
          const replacement = startWorker(lease("w1b"), env).then((w) => {
            spawned.push(w);
            return w.leased;
          });
          pending.push(replacement);
          hold = within(replacement, 60_000).then(() => undefined);
          return note("w1");
        }
        case "partition":
          link.cut();
          return note("w0");
        case "restore":
          link.restore();
          return note("w0");
        case "slow":
          pending.push(
            (async () => {
              for (let k = 0; k < 2; k++) {
                slowed.child.kill("SIGSTOP");
                await sleep(SLOW_MS);
                slowed.child.kill("SIGCONT");
                await sleep(200);
              }
            })(),
          );
          return note("w2");
        case "hang":
          hung.child.kill("SIGSTOP");
          pending.push(sleep(HANG_MS).then(() => hung.child.kill("SIGCONT")));
          return note("w3");
        case "restart-nats": {
          const from = step;
          pending.push(
            server.restart({
              downUntil: async () => {
                const deadline = Date.now() + 30_000;
                while (stepsSince(from) < 4 && Date.now() < deadline) await sleep(50);
              },
            }),
          );
          return note();
        }
      }
    };

    // Fault → the coordinator's first word about that worker: failed, its lease gone, or (speculation)
    // a late block of it re-issued to another worker.
    const onEvent = (e: RunEvent) => {
      const worker =
        e.event === "worker_failed" || e.event === "worker_left"
          ? e.worker
          : e.event === "shards_reissued"
            ? e.late_worker
            : undefined;
      if (worker === undefined) return;
      const cause = injected.find(
        (i) => i.worker === worker && ["kill", "partition", "hang"].includes(i.action) && !("seen" in i),
      );
      if (cause) {
        Object.assign(cause, { seen: true });
        detections.push(Date.now() - cause.at);
      }
    };

    const out = path.join(tmp, "chaos");
    const started = Date.now();
    await train({
      config,
      out,
      nats: server.url,
      security: { token: TOKEN },
      keepalive: KEEPALIVE,
      resume: false,
      onTrainer: (trainer) => trainer.eventLog.addSink(onEvent),
      onStep: () => {
        const action = plan.get(step++);
        if (action) act(action);
        const h = hold;
        hold = undefined;
        return h;
      },
    });
    await Promise.all(pending);
    const wallMs = Date.now() - started;
    expectSameRun(reference, out, same);

    expect(injected.map((i) => i.action).sort()).toEqual([...plan.values()].sort());
    const ev = events(out);
    const joined = new Set(ev.filter((e) => e.event === "worker_joined").map((e) => e.worker));
    expect(joined.has("w1b"), "the replacement joined").toBe(true);
    // The killed, partitioned and hung workers were each noticed (failed, left, or their work re-issued).
    expect(detections).toHaveLength(3);
    recordFault({
      fault: "chaos run: kill + replacement, partition + restore, slow, hang, NATS restart on 4 workers",
      tried: 1,
      survived: 1,
      bitIdentical: 1,
      detectionMs: Math.max(...detections),
      detail: `seed ${SEED}, ${injected.length} actions in ${(wallMs / 1000).toFixed(0)} s; detection: the worst of kill, partition, hang`,
    });
  }, 280_000);
});
