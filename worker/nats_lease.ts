/**
 * A worker's lease in the NATS membership bucket: its entry is written at once, refreshed every third of the
 * lease (so one lost heartbeat is not a departure), and deleted on a graceful stop so the coordinator sees
 * "left: deleted" at once instead of waiting out the lease. A killed worker simply stops refreshing.
 */
import { randomUUID } from "node:crypto";
import type { KV } from "@nats-io/kv";
import { log } from "../common/log.js";
import { parseWorkerAddress } from "../common/membership/address.js";
import {
  checkLeaseMs,
  checkWorkerId,
  DEFAULT_BUCKET,
  DEFAULT_LEASE_MS,
  type LeaseRecord,
  openLeaseBucket,
} from "../common/membership/lease_bucket.js";
import type { WorkerEndpoint } from "../common/membership/types.js";
import { closeNats, connectNats, type NatsAuth, redactNatsUrl, withTimeout } from "../common/nats_connect.js";

export interface LeaseOptions {
  url: string;
  bucket?: string;
  leaseMs?: number;
  auth?: NatsAuth;
  endpoint: WorkerEndpoint;
}

export interface Lease {
  /** Stops refreshing and deletes the entry; safe to call twice. */
  stop(): Promise<void>;
}

/** How a publish fails when the bucket's stream is gone (e.g. server restarted without its store); the
 * client reports "no responders" on a JetStream subject as "jetstream is not enabled". */
const BUCKET_GONE = /no responders|not found|jetstream is not enabled/i;

export async function holdLease(opts: LeaseOptions): Promise<Lease> {
  const { endpoint } = opts;
  const id = checkWorkerId(endpoint.id);
  parseWorkerAddress(endpoint.address);
  const bucket = opts.bucket ?? DEFAULT_BUCKET;
  const leaseMs = checkLeaseMs(opts.leaseMs ?? DEFAULT_LEASE_MS);
  const shown = redactNatsUrl(opts.url);
  const nc = await connectNats(opts.url, { auth: opts.auth, name: `inflora-worker-${id}` });
  const incarnation = randomUUID();

  let kv: KV;
  try {
    kv = await openLeaseBucket(nc, opts.url, bucket, leaseMs);
  } catch (err) {
    await nc.close().catch(() => {});
    throw err;
  }
  // A bucket created by someone else may expire entries sooner than our lease; refresh within both.
  const maxAgeMs = (await kv.status().catch(() => undefined))?.ttl ?? 0;
  const periodMs = Math.max(10, Math.min(leaseMs, maxAgeMs > 0 ? maxAgeMs : leaseMs) / 3);
  // A heartbeat stuck across an outage must not hold back the one after the reconnect.
  const heartbeatTimeoutMs = Math.max(250, periodMs);

  const put = async (timeout?: number): Promise<void> => {
    const record: LeaseRecord = {
      id,
      address: endpoint.address,
      capabilities: endpoint.capabilities,
      leaseMs,
      incarnation,
      heartbeat: new Date().toISOString(),
    };
    try {
      await kv.put(id, JSON.stringify(record), timeout === undefined ? {} : { timeout });
    } catch (err) {
      if (!BUCKET_GONE.test(String(err))) throw err;
      kv = await openLeaseBucket(nc, opts.url, bucket, leaseMs, timeout);
      await kv.put(id, JSON.stringify(record), timeout === undefined ? {} : { timeout });
    }
  };

  try {
    await put();
  } catch (err) {
    await nc.close().catch(() => {});
    const reason = err instanceof Error ? err.message : String(err);
    throw new Error(
      `cannot write worker lease '${id}' to NATS KV bucket '${bucket}' at ${shown}: ${reason}`,
      {
        cause: err,
      },
    );
  }

  let inFlight: Promise<void> | undefined;
  let again = false;
  let failing = false;
  let stopping = false;
  const refresh = (): void => {
    if (stopping) return;
    if (inFlight !== undefined) {
      again = true;
      return;
    }
    inFlight = withTimeout(put(heartbeatTimeoutMs), 2 * heartbeatTimeoutMs, "lease heartbeat")
      .then(() => {
        if (failing) log.info({ worker: id, url: shown }, "worker lease refreshed again");
        failing = false;
      })
      .catch((err) => {
        log.debug({ worker: id, err: String(err) }, "worker lease refresh failed");
        if (!failing)
          log.warn({ worker: id, url: shown, err: String(err) }, "worker lease refresh failed; retrying");
        failing = true;
      })
      .finally(() => {
        inFlight = undefined;
        if (again) {
          again = false;
          refresh();
        }
      });
  };
  const timer = setInterval(refresh, periodMs);
  // The worker's gRPC server keeps the process alive; the lease must not be the reason it lingers.
  timer.unref();
  // After an outage the coordinator grants one lease from its own reconnect; refresh at once, not later.
  void (async () => {
    for await (const s of nc.status()) if (s.type === "reconnect") refresh();
  })();

  let stopped: Promise<void> | undefined;
  return {
    stop() {
      stopped ??= (async () => {
        stopping = true;
        clearInterval(timer);
        await inFlight;
        try {
          await withTimeout(kv.delete(id), 2000, "deleting the lease");
        } catch (err) {
          // The coordinator will see the lease expire instead.
          log.warn({ worker: id, url: shown, err: String(err) }, "could not delete worker lease");
        }
        await closeNats(nc);
      })();
      return stopped;
    },
  };
}
