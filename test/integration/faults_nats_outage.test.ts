/**
 * The coordinator cut off from NATS (issue #15): its link to a nats-server in a network namespace goes
 * silent for longer than a worker lease while gRPC to the workers works. No worker is dropped — lease
 * expiry pauses while the server does not answer the coordinator — the workers get the parameters over gRPC
 * meanwhile, every event published meanwhile is either in the JetStream stream or counted (metric and log)
 * as not acknowledged, and the run ends bit-identical to a clean one-worker run.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { train } from "../../cli/train.js";
import { log } from "../../common/log.js";
import { connectNats } from "../../common/nats_connect.js";
import type { RunEvent } from "../../coordinator/events.js";
import { DEFAULT_EVENT_STREAM } from "../../coordinator/events_nats.js";
import {
  type ChildWorker,
  events,
  expectSameRun,
  scrapeMetric,
  shortConfig,
  startNatsWorkers,
  stopWorkers,
} from "../helpers/distributed.js";
import { recordFault } from "../helpers/fault_table.js";
import { freePort, type NatsTestServer, startNatsServer } from "../helpers/nats_server.js";
import { createNetns, removeAllNetns } from "../helpers/netns.js";

/** Long enough that a worker busy loading its model on a loaded machine still refreshes in time. */
const LEASE_MS = 6_000;
const tmp = mkdtempSync(path.join(os.tmpdir(), "inflora-nats-faults-"));
const config = shortConfig(tmp);
const reference = path.join(tmp, "reference");
const same = (cond: boolean, what: string) => expect(cond, what).toBe(true);
const spawned: ChildWorker[] = [];
const servers: NatsTestServer[] = [];

beforeAll(async () => {
  await train({ config, out: reference, workers: 1, inProcess: true, resume: false });
}, 300_000);

afterEach(async () => {
  vi.restoreAllMocks();
  stopWorkers(spawned.splice(0));
  for (const s of servers.splice(0)) await s.stop();
});

afterAll(() => {
  removeAllNetns();
  rmSync(tmp, { recursive: true, force: true });
});

describe("NATS under fault", () => {
  it("coordinator cut off from NATS for longer than a lease, gRPC fine: no worker dropped, events kept or counted; bit-identical", async () => {
    // The server sits in a namespace with two links: the coordinator's (cut) and the workers' (kept).
    const ns = createNetns({ links: 2 });
    const server = await startNatsServer({ netns: ns });
    servers.push(server);
    const [toCoordinator, toWorkers] = ns.links;
    spawned.push(...(await startNatsWorkers(`nats://${toWorkers.nsAddress}:${server.port}`, 2, LEASE_MS)));

    const warnings = recordWarnings();
    const out = path.join(tmp, "coordinator-cut");
    const metricsPort = await freePort();
    let cutAt: number | undefined;
    let restoring: Promise<void> | undefined;
    let failuresMetric: Promise<number> | undefined;
    const outageMs = LEASE_MS * 2;
    const onEvent = (e: RunEvent) => {
      if (cutAt === undefined && e.event === "epoch_started" && e.task === 1 && e.epoch === 0) {
        cutAt = toCoordinator.cut();
        restoring = new Promise((r) => setTimeout(r, outageMs)).then(() => {
          toCoordinator.restore();
        });
      }
      if (e.event === "run_finished")
        failuresMetric = scrapeMetric(`127.0.0.1:${metricsPort}`, /^inflora_nats_event_failures_total\{/);
    };
    await train({
      config,
      out,
      nats: `nats://${toCoordinator.nsAddress}:${server.port}`,
      metricsPort,
      metricsLingerMs: 3_000,
      resume: false,
      onTrainer: (trainer) => trainer.eventLog.addSink(onEvent),
    });
    await restoring;
    expect(cutAt, "the coordinator's link was cut").toBeDefined();
    expectSameRun(reference, out, same);

    const ev = events(out);
    expect(ev.filter((e) => e.event === "worker_left" || e.event === "worker_failed")).toEqual([]);
    const paused = warnings.find((w) => /NATS does not answer the coordinator/.test(w.msg));
    expect(paused, "the coordinator said it paused lease expiry").toBeDefined();
    const detectionMs = paused!.at - cutAt!;
    expect(detectionMs).toBeLessThan(outageMs);

    // Every event is in the stream or counted as not acknowledged — nothing vanishes unsaid.
    const nc = await connectNats(`nats://${toWorkers.nsAddress}:${server.port}`);
    const stored = (await (await jetstreamManager(nc)).streams.info(DEFAULT_EVENT_STREAM)).state.messages;
    await nc.close();
    const failures = await failuresMetric!;
    expect(stored).toBeLessThanOrEqual(ev.length);
    expect(stored + failures).toBeGreaterThanOrEqual(ev.length);
    if (failures > 0)
      expect(warnings.some((w) => /not acknowledged by the NATS event stream/.test(w.msg))).toBe(true);
    recordFault({
      fault: `coordinator cut off from NATS for ${outageMs} ms (${outageMs / LEASE_MS}× a lease), gRPC up`,
      tried: 1,
      survived: 1,
      bitIdentical: 1,
      detectionMs,
      detail: `no worker dropped; ${ev.length - stored} of ${ev.length} events missing from JetStream, ${failures} counted unacknowledged`,
    });
  }, 110_000);
});

/** The coordinator's warnings from now on, with the time each was logged (still logged as usual). */
function recordWarnings(): Array<{ at: number; msg: string }> {
  const seen: Array<{ at: number; msg: string }> = [];
  const original = log.warn.bind(log);
  vi.spyOn(log, "warn").mockImplementation(((obj: unknown, msg?: unknown) => {
    seen.push({ at: Date.now(), msg: String(msg ?? obj) });
    return original(obj as object, msg as string);
  }) as typeof log.warn);
  return seen;
}
