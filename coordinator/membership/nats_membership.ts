/**
 * Membership discovered through a NATS KV bucket of worker leases (see lease_bucket.ts). A key appearing is
 * a join; a delete or purge is a graceful leave; a key whose heartbeats stop is a lost lease. nats-server 2.9
 * expires entries silently (max_age sends no watch event), so lost leases are timed here, per member, with
 * the coordinator's own clock — never the workers' clocks.
 */
import type { KV, KvWatchEntry } from "@nats-io/kv";
import type { NatsConnection, QueuedIterator } from "@nats-io/transport-node";
import { log } from "../../common/log.js";
import {
  checkLeaseMs,
  DEFAULT_BUCKET,
  DEFAULT_LEASE_MS,
  decodeLease,
  endpointOf,
  type LeaseRecord,
  openLeaseBucket,
} from "../../common/membership/lease_bucket.js";
import {
  describeMembers,
  type Membership,
  type MembershipEvent,
  type WorkerEndpoint,
} from "../../common/membership/types.js";
import { connectNats, type NatsAuth, redactNatsUrl, withTimeout } from "../../common/nats_connect.js";

export interface NatsMembershipOptions {
  url: string;
  bucket?: string;
  /** Lease for entries that do not state their own; also the bucket's max_age when this side creates it. */
  leaseMs?: number;
  auth?: NatsAuth;
  /** Names the connection, and makes workers pinned to another run (capability `run`) invisible. */
  runId?: string;
}

interface Member {
  record: LeaseRecord;
  timer?: NodeJS.Timeout;
}

/** How long start-up waits for the bucket's initial contents before going on with what it has. */
const SNAPSHOT_TIMEOUT_MS = 5000;
const REWATCH_DELAY_MS = 1000;
const CHECK_TIMEOUT_MS = 2000;
/** How often a coordinator that lost NATS without a disconnect asks the server whether it is back. */
const PROBE_INTERVAL_MS = 1000;

class NatsMembership implements Membership {
  readonly dynamic = true;
  private readonly known = new Map<string, Member>();
  private readonly listeners = new Set<(e: MembershipEvent) => void>();
  /** Rejects pending waitFor calls on close. */
  private readonly closing = new Set<() => void>();
  private watcher?: QueuedIterator<KvWatchEntry>;
  private closed = false;
  /** While the coordinator itself cannot see NATS, silence from workers proves nothing. */
  private suspended = false;
  /** Creation time of the stream being watched: a different one means the bucket was lost and re-made. */
  private watchedCreated = "";
  private checking = false;
  private recheck = false;
  private readonly checkTimer: NodeJS.Timeout;
  private markReady: () => void = () => {};
  private loop: Promise<void> = Promise.resolve();
  readonly ready: Promise<void>;

  constructor(
    private readonly nc: NatsConnection,
    private kv: KV,
    private readonly opts: Required<Pick<NatsMembershipOptions, "url" | "bucket" | "leaseMs">> &
      NatsMembershipOptions,
  ) {
    this.ready = new Promise((resolve) => {
      this.markReady = resolve;
    });
    void this.followStatus();
    // A watch on a stream that vanished (server restarted without its store, bucket deleted by hand) just
    // goes quiet; only looking at the stream reveals it.
    this.checkTimer = setInterval(() => void this.checkBucket(), Math.max(opts.leaseMs, 2000));
    this.checkTimer.unref();
  }

  members(): WorkerEndpoint[] {
    return [...this.known.values()].map((m) => endpointOf(m.record));
  }

  onChange(listener: (e: MembershipEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  waitFor(n: number, timeoutMs: number): Promise<WorkerEndpoint[]> {
    if (this.known.size >= n) return Promise.resolve(this.members());
    if (this.closed) return Promise.reject(new Error(`membership closed; cannot wait for ${n} workers`));
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        unsubscribe();
        this.closing.delete(onClose);
      };
      const onClose = () => {
        done();
        reject(new Error(`membership closed while waiting for ${n} workers`));
      };
      this.closing.add(onClose);
      const timer = setTimeout(() => {
        done();
        reject(
          new Error(
            `waited ${timeoutMs} ms for ${n} workers in NATS KV bucket '${this.opts.bucket}' at ` +
              `${redactNatsUrl(this.opts.url)}; saw ${this.known.size}: ${describeMembers(this.members())}`,
          ),
        );
      }, timeoutMs);
      const unsubscribe = this.onChange(() => {
        if (this.known.size >= n) {
          done();
          resolve(this.members());
        }
      });
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.checkTimer);
    this.watcher?.stop();
    for (const f of [...this.closing]) f();
    for (const [id, m] of this.known) {
      clearTimeout(m.timer);
      this.known.delete(id);
      this.emit({ kind: "left", endpoint: endpointOf(m.record), reason: "closed" });
    }
    this.listeners.clear();
    this.markReady();
    await this.nc.close().catch(() => {});
    await this.loop;
  }

  private emit(e: MembershipEvent): void {
    for (const l of [...this.listeners]) {
      try {
        l(e);
      } catch (err) {
        // A listener's bug must not stop the watch: membership would silently freeze.
        log.error({ err, event: e.kind, worker: e.endpoint.id }, "membership listener threw");
      }
    }
  }

  private arm(id: string, m: Member): void {
    clearTimeout(m.timer);
    m.timer = undefined;
    if (this.suspended || this.closed) return;
    const leaseMs = Number.isNaN(m.record.leaseMs) ? this.opts.leaseMs : m.record.leaseMs;
    m.timer = setTimeout(() => void this.expire(id, m.record), leaseMs);
    m.timer.unref();
  }

  /**
   * A lease ran out. From here, the coordinator's own link to NATS failing looks exactly like every worker
   * falling silent, and the client notices a dead connection only after several missed pings: ask the
   * server first. If it does not answer, nobody is dropped for an outage that may be ours alone.
   */
  private async expire(id: string, record: LeaseRecord): Promise<void> {
    if (this.suspended || this.closed) return;
    if (await this.serverAnswers()) {
      // Heartbeats queued behind the silence arrive before the server's answer: one may have renewed it.
      if (this.known.get(id)?.record === record) this.remove(id, "lease-expired");
      return;
    }
    if (this.suspended || this.closed) return;
    this.suspend("NATS does not answer the coordinator; worker lease expiry paused until it does");
    while (this.suspended && !this.closed && !this.nc.isClosed()) {
      await new Promise((r) => setTimeout(r, PROBE_INTERVAL_MS));
      // A reconnect (followStatus) may have resumed already.
      if (this.suspended && (await this.serverAnswers()) && this.suspended)
        this.resume("NATS answers the coordinator again; worker lease expiry resumed");
    }
  }

  private async serverAnswers(): Promise<boolean> {
    try {
      await withTimeout(this.nc.flush(), CHECK_TIMEOUT_MS, "NATS ping");
      return true;
    } catch {
      return false;
    }
  }

  /** While the coordinator cannot hear NATS, silence from workers proves nothing: no lease runs out. */
  private suspend(why: string): void {
    if (this.suspended) return;
    this.suspended = true;
    for (const m of this.known.values()) clearTimeout(m.timer);
    log.warn({ url: redactNatsUrl(this.opts.url) }, why);
  }

  /** A full lease from now: workers had no way to reach us either, give them time to refresh. */
  private resume(why: string): void {
    if (!this.suspended) return;
    this.suspended = false;
    for (const [id, m] of this.known) this.arm(id, m);
    log.info({ url: redactNatsUrl(this.opts.url) }, why);
  }

  private remove(id: string, reason: "deleted" | "lease-expired"): void {
    const m = this.known.get(id);
    if (m === undefined) return;
    clearTimeout(m.timer);
    this.known.delete(id);
    log.info({ worker: id, address: m.record.address, reason }, "worker left");
    this.emit({ kind: "left", endpoint: endpointOf(m.record), reason });
  }

  private apply(e: KvWatchEntry): void {
    if (e.operation !== "PUT") {
      this.remove(e.key, "deleted");
      return;
    }
    let record: LeaseRecord;
    try {
      record = decodeLease(e.key, e.string());
    } catch (err) {
      // Leave a known member's timer running: a worker that only writes garbage loses its lease.
      log.warn({ worker: e.key, revision: e.revision, err: String(err) }, "ignoring malformed worker lease");
      return;
    }
    const pinned = record.capabilities.run;
    if (this.opts.runId !== undefined && pinned !== undefined && pinned !== this.opts.runId) {
      this.remove(e.key, "deleted");
      return;
    }
    const old = this.known.get(e.key);
    if (
      old !== undefined &&
      old.record.incarnation === record.incarnation &&
      old.record.address === record.address
    ) {
      old.record = record;
      this.arm(e.key, old);
      return;
    }
    // Same id, new process or address: the old holder is gone, and the coordinator must handshake anew.
    if (old !== undefined) this.remove(e.key, "lease-expired");
    const m: Member = { record };
    this.known.set(e.key, m);
    this.arm(e.key, m);
    log.info({ worker: e.key, address: record.address, capabilities: record.capabilities }, "worker joined");
    this.emit({ kind: "joined", endpoint: endpointOf(record) });
  }

  private async followStatus(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type === "disconnect") {
        this.suspend("lost NATS; worker lease expiry paused until reconnect");
      } else if (s.type === "reconnect") {
        this.resume("NATS reconnected; worker lease expiry resumed");
        void this.checkBucket();
      }
    }
  }

  /** Re-watches when the bucket's stream is not the one being watched any more (creating it if missing). */
  private async checkBucket(): Promise<void> {
    if (this.closed || this.suspended || this.watchedCreated === "") return;
    if (this.checking) {
      this.recheck = true;
      return;
    }
    this.checking = true;
    try {
      let created: string | undefined;
      try {
        created = (await withTimeout(this.kv.status(), CHECK_TIMEOUT_MS, "bucket status")).streamInfo.created;
      } catch (err) {
        if (!/not found/i.test(String(err))) return; // transient; the next check will tell
        this.kv = await openLeaseBucket(this.nc, this.opts.url, this.opts.bucket, this.opts.leaseMs);
        created = (await this.kv.status()).streamInfo.created;
      }
      if (created !== this.watchedCreated && !this.closed) {
        log.warn({ bucket: this.opts.bucket }, "worker bucket was lost and re-created; watching the new one");
        this.watchedCreated = ""; // no further checks until the new watch is up
        this.watcher?.stop();
      }
    } catch (err) {
      log.debug({ err: String(err), bucket: this.opts.bucket }, "checking the worker bucket failed");
    } finally {
      this.checking = false;
      if (this.recheck) {
        this.recheck = false;
        void this.checkBucket();
      }
    }
  }

  /** Starts watching; resolves once the watch exists (its initial snapshot may still be arriving). */
  async start(): Promise<void> {
    const watcher = await this.watch();
    this.loop = this.watchLoop(watcher);
  }

  private async watch(): Promise<QueuedIterator<KvWatchEntry>> {
    // An empty bucket yields no initial entries, so the end of the snapshot must be known beforehand.
    const info = (await this.kv.status()).streamInfo;
    const empty = info.state.messages === 0;
    const watcher = await this.kv.watch();
    this.watchedCreated = info.created;
    this.watcher = watcher;
    if (this.closed) watcher.stop();
    if (empty) this.markReady();
    return watcher;
  }

  /** Consumes the watch until closed; a watch that ends by itself (e.g. the bucket was lost) is re-created. */
  private async watchLoop(watcher: QueuedIterator<KvWatchEntry> | undefined): Promise<void> {
    while (!this.closed) {
      try {
        if (watcher === undefined) {
          this.kv = await openLeaseBucket(this.nc, this.opts.url, this.opts.bucket, this.opts.leaseMs);
          watcher = await this.watch();
        }
        for await (const e of watcher) {
          this.apply(e);
          // The last entry of the initial snapshot has nothing pending after it.
          if (e.delta === 0 || e.isUpdate) this.markReady();
        }
      } catch (err) {
        if (!this.closed)
          log.warn({ err: String(err), bucket: this.opts.bucket }, "NATS membership watch failed");
      }
      watcher = undefined;
      if (this.closed || this.nc.isClosed()) break;
      log.warn({ bucket: this.opts.bucket }, "NATS membership watch ended; watching again shortly");
      await new Promise((r) => setTimeout(r, REWATCH_DELAY_MS));
    }
    this.markReady();
  }
}

export async function natsMembership(opts: NatsMembershipOptions): Promise<Membership> {
  const bucket = opts.bucket ?? DEFAULT_BUCKET;
  const leaseMs = checkLeaseMs(opts.leaseMs ?? DEFAULT_LEASE_MS);
  const name = opts.runId === undefined ? "inflora-coordinator" : `inflora-coordinator-${opts.runId}`;
  const nc = await connectNats(opts.url, { auth: opts.auth, name });
  let m: NatsMembership | undefined;
  try {
    const kv = await openLeaseBucket(nc, opts.url, bucket, leaseMs);
    m = new NatsMembership(nc, kv, { ...opts, bucket, leaseMs });
    await m.start();
  } catch (err) {
    await (m?.close() ?? nc.close()).catch(() => {});
    const reason = err instanceof Error ? err.message : String(err);
    if (reason.includes(redactNatsUrl(opts.url))) throw err;
    throw new Error(`cannot watch NATS KV bucket '${bucket}' at ${redactNatsUrl(opts.url)}: ${reason}`, {
      cause: err,
    });
  }
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(true), SNAPSHOT_TIMEOUT_MS);
  });
  if (await Promise.race([m.ready.then(() => false), timedOut])) {
    log.warn(
      { bucket },
      "initial contents of the worker bucket not complete; continuing, late entries will join",
    );
  }
  clearTimeout(timer);
  return m;
}
