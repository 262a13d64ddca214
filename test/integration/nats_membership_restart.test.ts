/**
 * NATS membership when the server goes away under a live watcher: a plain restart (store kept) and one that
 * loses the store, as a server without a persistent volume would.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Membership, MembershipEvent } from "../../common/membership/types.js";
import { natsMembership } from "../../coordinator/membership/nats_membership.js";
import { holdLease } from "../../worker/nats_lease.js";
import { type NatsTestServer, startNatsServer } from "../helpers/nats_server.js";

const LEASE_MS = 1500;

let server: NatsTestServer;
let bucketCount = 0;
const freshBucket = () => `restart_workers_${bucketCount++}`;

beforeAll(async () => {
  server = await startNatsServer();
});
afterAll(async () => {
  await server?.stop();
});

function recorder(m: Membership) {
  const events: MembershipEvent[] = [];
  m.onChange((e) => events.push(e));
  return {
    events,
    next(pred: (e: MembershipEvent) => boolean, timeoutMs: number): Promise<MembershipEvent> {
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

describe("NATS membership across server restarts", () => {
  it("keeps watching across a NATS server restart and still detects departures afterwards", async () => {
    const bucket = freshBucket();
    const m = await natsMembership({ url: server.url, bucket, leaseMs: LEASE_MS });
    const rec = recorder(m);
    const a = await holdLease({
      url: server.url,
      bucket,
      leaseMs: LEASE_MS,
      endpoint: { id: "survivor", address: "127.0.0.1:7020", capabilities: {} },
    });
    await m.waitFor(1, 5000);

    // Down for longer than a lease: the coordinator must not call that a lost lease, since it could not
    // hear anyone either.
    await server.restart({ downMs: LEASE_MS * 1.5 });
    await new Promise((r) => setTimeout(r, LEASE_MS * 1.5));
    expect(rec.events.filter((e) => e.kind === "left")).toEqual([]);
    expect(m.members().map((w) => w.id)).toEqual(["survivor"]);

    // Still watching: a join and a graceful leave after the restart are seen.
    const b = await holdLease({
      url: server.url,
      bucket,
      leaseMs: LEASE_MS,
      endpoint: { id: "newcomer", address: "127.0.0.1:7021", capabilities: {} },
    });
    await rec.next((e) => e.kind === "joined" && e.endpoint.id === "newcomer", 5000);
    await a.stop();
    await rec.next((e) => e.kind === "left" && e.endpoint.id === "survivor" && e.reason === "deleted", 5000);
    await b.stop();
    await m.close();
  });

  it("re-creates and re-watches the bucket when the server comes back without its store", async () => {
    const bucket = freshBucket();
    const m = await natsMembership({ url: server.url, bucket, leaseMs: LEASE_MS });
    const rec = recorder(m);
    const a = await holdLease({
      url: server.url,
      bucket,
      leaseMs: LEASE_MS,
      endpoint: { id: "phoenix", address: "127.0.0.1:7030", capabilities: {} },
    });
    await m.waitFor(1, 5000);
    await server.restart({ wipeStore: true });
    // The worker re-creates the bucket with its next heartbeat, the coordinator notices the new stream.
    await new Promise((r) => setTimeout(r, LEASE_MS * 2));
    expect(m.members().map((w) => w.id)).toEqual(["phoenix"]);
    await a.stop();
    await rec.next((e) => e.kind === "left" && e.reason === "deleted", 5000);
    await m.close();
  });
});
