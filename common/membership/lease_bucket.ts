/**
 * The KV bucket both sides of NATS membership share: its defaults, how it is created so that it works on
 * nats-server 2.9, and the JSON a worker keeps under its id. Kept apart so the worker's lease holder and
 * the coordinator's watcher cannot drift out of agreement.
 */

import { jetstream } from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { redactNatsUrl } from "../nats_connect.js";
import type { WorkerEndpoint } from "./types.js";

export const DEFAULT_BUCKET = "inflora_workers";
export const DEFAULT_LEASE_MS = 10_000;
/** Bounds on a lease announced by a worker, so one bad entry cannot make the coordinator spin or wait forever. */
const MIN_LEASE_MS = 100;
const MAX_LEASE_MS = 600_000;

/** What a worker stores under its id. */
export interface LeaseRecord {
  readonly id: string;
  readonly address: string;
  readonly capabilities: Readonly<Record<string, string>>;
  readonly leaseMs: number;
  /** Random per process: tells a restarted worker (same id, same address) from a heartbeat. */
  readonly incarnation: string;
  /** Worker clock; informative only — the coordinator times leases with its own clock. */
  readonly heartbeat: string;
}

export function checkLeaseMs(leaseMs: number): number {
  if (!Number.isFinite(leaseMs) || leaseMs < MIN_LEASE_MS || leaseMs > MAX_LEASE_MS) {
    throw new Error(`lease time ${leaseMs} ms is outside ${MIN_LEASE_MS}..${MAX_LEASE_MS} ms`);
  }
  return leaseMs;
}

/** KV keys are NATS subject tokens: the id must be usable as one as-is, since it is also shown to users. */
export function checkWorkerId(id: string): string {
  if (!/^[-/=.\w]+$/.test(id) || id.startsWith(".") || id.endsWith(".")) {
    throw new Error(
      `worker id '${id}' cannot be a NATS KV key: use letters, digits and - _ = / . (not at the ends)`,
    );
  }
  return id;
}

export function decodeLease(key: string, json: string): LeaseRecord {
  const v: unknown = JSON.parse(json);
  if (typeof v !== "object" || v === null) throw new Error("not a JSON object");
  const r = v as Record<string, unknown>;
  if (typeof r.address !== "string" || r.address === "") throw new Error("no address");
  const capabilities: Record<string, string> = {};
  if (typeof r.capabilities === "object" && r.capabilities !== null) {
    for (const [k, val] of Object.entries(r.capabilities)) capabilities[k] = String(val);
  }
  const leaseMs = typeof r.leaseMs === "number" ? r.leaseMs : Number.NaN;
  return {
    id: key,
    address: r.address,
    capabilities,
    leaseMs: Number.isFinite(leaseMs) ? Math.min(MAX_LEASE_MS, Math.max(MIN_LEASE_MS, leaseMs)) : Number.NaN,
    incarnation: typeof r.incarnation === "string" ? r.incarnation : "",
    heartbeat: typeof r.heartbeat === "string" ? r.heartbeat : "",
  };
}

export function endpointOf(r: LeaseRecord): WorkerEndpoint {
  return { id: r.id, address: r.address, capabilities: r.capabilities };
}

/**
 * Opens the bucket, creating it if missing. Its max_age is the lease time: with server 2.9 that expiry is
 * silent (no watch event), so it only garbage-collects entries of dead workers for coordinators that start
 * later; live detection is the coordinator's own timer. History 1: only the latest heartbeat matters.
 */
export async function openLeaseBucket(
  nc: NatsConnection,
  url: string,
  bucket: string,
  leaseMs: number,
  /** Per-request timeout; a heartbeat must give up within its period rather than the 5 s default. */
  timeoutMs?: number,
): Promise<KV> {
  const kvm = new Kvm(timeoutMs === undefined ? nc : jetstream(nc, { timeout: timeoutMs }));
  try {
    return await kvm.create(bucket, { history: 1, ttl: leaseMs, description: "inflora worker leases" });
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    // Created concurrently or earlier with another lease time: use it as it is.
    if (/already in use/i.test(reason)) return kvm.open(bucket);
    throw new Error(`cannot open NATS KV bucket '${bucket}' at ${redactNatsUrl(url)}: ${reason}`, {
      cause: err,
    });
  }
}
