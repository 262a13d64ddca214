/**
 * NATS membership against a real nats-server: joins, graceful and crashed departures, waiting, filtering.
 * Server restarts are in nats_membership_restart.test.ts.
 */
import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Membership, MembershipEvent } from "../../common/membership/types.js";
import { natsMembership } from "../../coordinator/membership/nats_membership.js";
import { holdLease } from "../../worker/nats_lease.js";
import { type NatsTestServer, startNatsServer } from "../helpers/nats_server.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const LEASE_MS = 1500;

let server: NatsTestServer;
let bucketCount = 0;
/** A bucket per test, so tests never see each other's workers. */
const freshBucket = () => `test_workers_${bucketCount++}`;

beforeAll(async () => {
  server = await startNatsServer();
});
afterAll(async () => {
  await server?.stop();
});

function recorder(m: Membership) {
  const events: Array<MembershipEvent & { at: number }> = [];
  m.onChange((e) => events.push({ ...e, at: Date.now() }));
  return {
    events,
    next(
      pred: (e: MembershipEvent) => boolean,
      timeoutMs: number,
    ): Promise<MembershipEvent & { at: number }> {
      return new Promise((resolve, reject) => {
        const deadline = Date.now() + timeoutMs;
        const poll = () => {
          const hit = events.find(pred);
          if (hit !== undefined) return resolve(hit);
          if (Date.now() > deadline)
            return reject(new Error(`no matching event; saw ${JSON.stringify(events)}`));
          setTimeout(poll, 10);
        };
        poll();
      });
    },
  };
}

function spawnLeaseHolder(args: object): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", path.join(HERE, "nats_lease_child.ts"), JSON.stringify(args)],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  return new Promise((resolve, reject) => {
    let err = "";
    child.stderr?.on("data", (d) => {
      err += d;
    });
    child.stdout?.on("data", (d) => {
      if (String(d).includes("ready")) resolve(child);
    });
    child.once("exit", (code) => reject(new Error(`lease holder exited (${code}): ${err}`)));
  });
}

describe("NATS membership", () => {
  it("sees two workers join with their capabilities, and a graceful stop as left: deleted", async () => {
    const bucket = freshBucket();
    const m = await natsMembership({ url: server.url, bucket, leaseMs: LEASE_MS });
    const rec = recorder(m);
    const a = await holdLease({
      url: server.url,
      bucket,
      leaseMs: LEASE_MS,
      endpoint: { id: "w-a", address: "127.0.0.1:7001", capabilities: { backend: "cpu", device: "cpu0" } },
    });
    const b = await holdLease({
      url: server.url,
      bucket,
      leaseMs: LEASE_MS,
      endpoint: { id: "w-b", address: "127.0.0.1:7002", capabilities: { backend: "wasm", version: "0.1.0" } },
    });
    const members = await m.waitFor(2, 5000);
    expect(members.map((w) => w.id).sort()).toEqual(["w-a", "w-b"]);
    expect(members.find((w) => w.id === "w-a")).toEqual({
      id: "w-a",
      address: "127.0.0.1:7001",
      capabilities: { backend: "cpu", device: "cpu0" },
    });
    expect(rec.events.filter((e) => e.kind === "joined")).toHaveLength(2);

    // Heartbeats across several lease periods are refreshes, not new joins or departures.
    await new Promise((r) => setTimeout(r, LEASE_MS * 2));
    expect(rec.events).toHaveLength(2);
    expect(m.members()).toHaveLength(2);

    const t0 = Date.now();
    await a.stop();
    const left = await rec.next((e) => e.kind === "left", 2000);
    expect(left).toMatchObject({ kind: "left", reason: "deleted", endpoint: { id: "w-a" } });
    expect(left.at - t0).toBeLessThan(LEASE_MS / 2);
    expect(m.members().map((w) => w.id)).toEqual(["w-b"]);

    await b.stop();
    await m.close();
  });

  it("reports a killed worker as left: lease-expired within about the lease time", async () => {
    const bucket = freshBucket();
    const m = await natsMembership({ url: server.url, bucket, leaseMs: LEASE_MS });
    const rec = recorder(m);
    const child = await spawnLeaseHolder({
      url: server.url,
      bucket,
      leaseMs: LEASE_MS,
      endpoint: { id: "doomed", address: "127.0.0.1:7003", capabilities: {} },
    });
    await m.waitFor(1, 5000);
    // Kill between two heartbeats, as a crash would, not right after one.
    await new Promise((r) => setTimeout(r, LEASE_MS * 0.45));
    const killedAt = Date.now();
    child.kill("SIGKILL");
    const left = await rec.next((e) => e.kind === "left", LEASE_MS * 3);
    const latency = left.at - killedAt;
    console.log(`killed worker detected after ${latency} ms (lease ${LEASE_MS} ms)`);
    expect(left).toMatchObject({ reason: "lease-expired", endpoint: { id: "doomed" } });
    // Refreshed every lease/3, so the last heartbeat was at most a third of a lease before the kill.
    expect(latency).toBeGreaterThanOrEqual(LEASE_MS * (2 / 3) - 50);
    expect(latency).toBeLessThan(LEASE_MS + 1000);
    expect(m.members()).toEqual([]);
    await m.close();
  });

  it("lists workers already registered when it starts, and waitFor times out naming what it saw", async () => {
    const bucket = freshBucket();
    const a = await holdLease({
      url: server.url,
      bucket,
      leaseMs: LEASE_MS,
      endpoint: { id: "early", address: "worker-0.workers:7000", capabilities: {} },
    });
    const m = await natsMembership({ url: server.url, bucket, leaseMs: LEASE_MS });
    expect(m.members().map((w) => w.id)).toEqual(["early"]);
    const t0 = Date.now();
    await expect(m.waitFor(2, 400)).rejects.toThrow(
      new RegExp(
        `waited 400 ms for 2 workers in NATS KV bucket '${bucket}' at nats://127.0.0.1:\\d+; saw 1: early \\(worker-0.workers:7000\\)`,
      ),
    );
    expect(Date.now() - t0).toBeGreaterThanOrEqual(390);

    // A worker that arrives while waiting resolves the wait.
    const waiting = m.waitFor(2, 5000);
    const b = await holdLease({
      url: server.url,
      bucket,
      leaseMs: LEASE_MS,
      endpoint: { id: "late", address: "worker-1.workers:7000", capabilities: {} },
    });
    expect((await waiting).map((w) => w.id).sort()).toEqual(["early", "late"]);

    const rec = recorder(m);
    await m.close();
    expect(rec.events.map((e) => e.kind === "left" && e.reason)).toEqual(["closed", "closed"]);
    await a.stop();
    await b.stop();
  });

  it("ignores an empty bucket at start and workers pinned to another run", async () => {
    const bucket = freshBucket();
    const m = await natsMembership({ url: server.url, bucket, leaseMs: LEASE_MS, runId: "run-a" });
    expect(m.members()).toEqual([]);
    const other = await holdLease({
      url: server.url,
      bucket,
      leaseMs: LEASE_MS,
      endpoint: { id: "other", address: "127.0.0.1:7010", capabilities: { run: "run-b" } },
    });
    const mine = await holdLease({
      url: server.url,
      bucket,
      leaseMs: LEASE_MS,
      endpoint: { id: "mine", address: "127.0.0.1:7011", capabilities: { run: "run-a" } },
    });
    await m.waitFor(1, 5000);
    await new Promise((r) => setTimeout(r, 200));
    expect(m.members().map((w) => w.id)).toEqual(["mine"]);
    await other.stop();
    await mine.stop();
    // Closing ends a pending wait at once rather than at its timeout.
    const waiting = m.waitFor(5, 60_000);
    await m.close();
    await expect(waiting).rejects.toThrow("membership closed while waiting for 5 workers");
  });

  it("refuses bad worker ids and addresses before touching NATS", async () => {
    const base = { url: server.url, bucket: freshBucket(), leaseMs: LEASE_MS };
    await expect(
      holdLease({ ...base, endpoint: { id: "a b", address: "h:1", capabilities: {} } }),
    ).rejects.toThrow(/worker id 'a b' cannot be a NATS KV key/);
    await expect(
      holdLease({ ...base, endpoint: { id: "w", address: "nohost", capabilities: {} } }),
    ).rejects.toThrow(/invalid --worker 'nohost': no port/);
  });
});
