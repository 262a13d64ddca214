/**
 * The coordinator's workers: handshake, version-keyed state, and fanning micro-shards out as contiguous
 * blocks. A worker that fails, times out or sends a malformed reply loses its block to the others within
 * the same step; workers join (and failed ones are retried) only at step boundaries. Results always come
 * back in micro-shard order, so which worker computed what never changes the numbers.
 */
import { log } from "../common/log.js";
import type { Membership, MembershipEvent, WorkerEndpoint } from "../common/membership/types.js";
import {
  isMalformedReply,
  MALFORMED_REPLY,
  type MicroShard,
  type SetupReply,
  type SetupRequest,
  StaleVersionError,
  type TaskState,
  type TrainParams,
  type WorkerClient,
} from "../common/protocol.js";

export type MemberStatus = "ready" | "failed" | "quarantined";

export interface PoolMember {
  readonly id: string;
  readonly client: WorkerClient;
  readonly endpoint?: WorkerEndpoint;
  status: MemberStatus;
  reply?: SetupReply;
  stateVersion?: number;
  failures: number;
  retryAt: number;
}

export interface PoolEvents {
  joined(member: PoolMember): void;
  failed(member: PoolMember, reason: string): void;
  left(member: PoolMember, reason: string): void;
}

export interface PoolOptions {
  /** Opens a client for a worker that joined through membership. */
  readonly connect?: (endpoint: WorkerEndpoint) => WorkerClient;
  readonly membership?: Membership;
  /** Deadline of one call (a block of micro-shards). */
  readonly callTimeoutMs?: number;
  /** How long a step may wait for any worker to become available before the run fails. */
  readonly waitForWorkersMs?: number;
  /** First retry delay of a failed worker; doubles per failure up to a minute. */
  readonly retryBaseMs?: number;
  /**
   * Restart budget: a worker that fails this many times in a row (handshakes that succeed do not count as
   * recoveries, only calls that do) is quarantined, so a broken worker cannot keep a run spinning.
   */
  readonly maxConsecutiveFailures?: number;
  readonly events?: Partial<PoolEvents>;
  /**
   * Carries each step's parameters to every worker at once (NATS), so that the transports may send a
   * worker only their version; without it, each worker's transport sends them in full.
   */
  readonly params?: ParamsPublisher;
}

/** The transports' side of `publishParams`. */
export interface ParamsPublisher {
  publish(params: TrainParams, D: number): void;
}

export class NoWorkersError extends Error {
  override readonly name = "NoWorkersError";
}

class CallTimeout extends Error {
  override readonly name = "CallTimeout";
}

/** A worker answered for other shards than it was given: quarantined, as for any malformed reply. */
class ShardMismatchError extends Error {
  override readonly name = "ShardMismatchError";
  readonly tag = MALFORMED_REPLY;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  if (!Number.isFinite(ms)) return p;
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CallTimeout(`${what} exceeded its ${ms} ms deadline`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

export class WorkerPool {
  private readonly members = new Map<string, PoolMember>();
  private readonly pendingJoins: WorkerEndpoint[] = [];
  private setupReq?: SetupRequest;
  private latestState?: TaskState;
  private unsubscribe?: () => void;
  private readonly opts: Required<Omit<PoolOptions, "connect" | "membership" | "events" | "params">> &
    PoolOptions;
  private events: Partial<PoolEvents>;

  constructor(initial: WorkerClient[], opts: PoolOptions = {}) {
    this.opts = {
      callTimeoutMs: Number.POSITIVE_INFINITY,
      waitForWorkersMs: 120_000,
      retryBaseMs: 2_000,
      maxConsecutiveFailures: 5,
      ...opts,
    };
    this.events = opts.events ?? {};
    for (const client of initial) this.add(client.name, client);
    if (opts.membership) {
      for (const e of opts.membership.members()) this.pendingJoins.push(e);
      this.unsubscribe = opts.membership.onChange((e) => this.onMembership(e));
    }
  }

  /** Replaces the observers of joins, failures and departures (the trainer's event log). */
  observe(events: Partial<PoolEvents>): void {
    this.events = events;
  }

  /** Workers currently usable. */
  get size(): number {
    return this.ready().length;
  }

  list(): readonly PoolMember[] {
    return [...this.members.values()];
  }

  private add(id: string, client: WorkerClient, endpoint?: WorkerEndpoint): PoolMember {
    const m: PoolMember = { id, client, endpoint, status: "failed", failures: 0, retryAt: 0 };
    this.members.set(id, m);
    return m;
  }

  private onMembership(e: MembershipEvent): void {
    if (e.kind === "joined") {
      this.pendingJoins.push(e.endpoint);
      return;
    }
    const m = this.members.get(e.endpoint.id);
    if (!m) return;
    this.members.delete(m.id);
    void m.client.close().catch(() => {});
    this.events.left?.(m, e.reason);
  }

  private ready(): PoolMember[] {
    return [...this.members.values()].filter((m) => m.status === "ready");
  }

  /** Handshakes every known worker; resolves once at least one is ready. */
  async start(req: SetupRequest): Promise<void> {
    this.setupReq = req;
    await this.boundary();
    if (this.size === 0) await this.waitForAny();
  }

  /** A step boundary: admits workers that joined and retries failed ones whose backoff has passed. */
  async boundary(): Promise<void> {
    const req = this.setupReq;
    if (!req) throw new Error("worker pool used before start()");
    while (this.pendingJoins.length) {
      const e = this.pendingJoins.shift()!;
      if (this.members.has(e.id) || !this.opts.connect) continue;
      this.add(e.id, this.opts.connect(e), e);
    }
    const now = Date.now();
    const due = [...this.members.values()].filter((m) => m.status === "failed" && m.retryAt <= now);
    await Promise.all(due.map((m) => this.handshake(m, req)));
  }

  private async handshake(m: PoolMember, req: SetupRequest): Promise<void> {
    try {
      m.reply = await withTimeout(m.client.setup(req), this.opts.callTimeoutMs, `setup of ${m.id}`);
      m.status = "ready";
      m.stateVersion = undefined;
      this.events.joined?.(m);
    } catch (err) {
      this.markFailed(m, `handshake failed: ${(err as Error).message}`, false);
    }
  }

  private markFailed(m: PoolMember, reason: string, quarantine: boolean): void {
    if (m.status === "quarantined") return;
    const wasReady = m.status === "ready";
    m.failures++;
    if (m.failures >= this.opts.maxConsecutiveFailures) {
      quarantine = true;
      reason = `${reason} (${m.failures} failures in a row: quarantined)`;
    }
    m.status = quarantine ? "quarantined" : "failed";
    m.stateVersion = undefined;
    const delay = Math.min(60_000, this.opts.retryBaseMs * 2 ** Math.min(m.failures - 1, 5));
    m.retryAt = quarantine ? Number.POSITIVE_INFINITY : Date.now() + delay;
    if (wasReady || m.failures === 1) this.events.failed?.(m, reason);
    log.warn({ worker: m.id, reason, quarantined: quarantine }, "worker failed");
  }

  /** Waits (admitting joins and retrying failures) until a worker is ready, or fails the run. */
  private async waitForAny(): Promise<void> {
    const deadline = Date.now() + this.opts.waitForWorkersMs;
    while (this.size === 0) {
      const members = [...this.members.values()];
      // Nobody new can join a fixed list: with every member quarantined the run cannot go on.
      if (
        !this.opts.membership?.dynamic &&
        members.length > 0 &&
        members.every((m) => m.status === "quarantined")
      ) {
        throw new NoWorkersError(
          `every worker is quarantined: ${members.map((m) => m.id).join(", ")}; see the worker_failed events for why`,
        );
      }
      if (Date.now() > deadline) {
        const seen = [...this.members.values()].map((m) => `${m.id} (${m.status})`).join(", ") || "none";
        throw new NoWorkersError(
          `no worker available for ${this.opts.waitForWorkersMs} ms; workers: ${seen}`,
        );
      }
      await new Promise((r) => setTimeout(r, 250));
      const next = Math.min(...[...this.members.values()].map((m) => m.retryAt));
      if (this.pendingJoins.length || next <= Date.now()) await this.boundary();
    }
  }

  /** Remembers the state for the next calls; each worker gets it before its next request. */
  async publishState(state: TaskState): Promise<void> {
    this.latestState = state;
  }

  /**
   * Publishes a step's parameters ahead of the calls that name them, where the transports have a way to
   * reach every worker at once; the calls still carry them for any worker that did not get them.
   */
  publishParams(params: TrainParams): void {
    const req = this.setupReq;
    if (!req) throw new Error("worker pool used before start()");
    this.opts.params?.publish(params, req.model.embedDim);
  }

  private async ensureState(m: PoolMember): Promise<void> {
    const s = this.latestState;
    if (!s || m.stateVersion === s.version) return;
    await withTimeout(m.client.setTaskState(s), this.opts.callTimeoutMs, `state for ${m.id}`);
    m.stateVersion = s.version;
  }

  /**
   * Runs `call` over the shards: contiguous blocks, one per ready worker; a failed block is redone on
   * the remaining workers until every shard has a result.
   */
  async map<R extends { index: number }>(
    shards: MicroShard[],
    call: (worker: WorkerClient, shards: MicroShard[]) => Promise<R[]>,
  ): Promise<R[]> {
    const results = new Map<number, R>();
    let pending = shards;
    while (pending.length) {
      if (this.size === 0) await this.waitForAny();
      const workers = this.ready();
      const blocks = splitBlocks(pending, workers.length);
      const failedShards: MicroShard[] = [];
      await Promise.all(
        blocks.map(async (block, k) => {
          const m = workers[k];
          try {
            const out = await this.callMember(m, block, call);
            const want = new Set(block.map((s) => s.index));
            if (out.length !== block.length || out.some((r) => !want.has(r.index))) {
              throw new ShardMismatchError(
                `${m.id} answered shards [${out.map((r) => r.index)}] for [${[...want]}]`,
              );
            }
            for (const r of out) results.set(r.index, r);
            m.failures = 0;
          } catch (err) {
            this.markFailed(m, (err as Error).message, isMalformedReply(err));
            failedShards.push(...block);
          }
        }),
      );
      pending = failedShards.sort((a, b) => a.index - b.index);
    }
    return shards.map((s) => results.get(s.index)!);
  }

  private async callMember<R>(
    m: PoolMember,
    block: MicroShard[],
    call: (worker: WorkerClient, shards: MicroShard[]) => Promise<R[]>,
  ): Promise<R[]> {
    for (let attempt = 0; ; attempt++) {
      await this.ensureState(m);
      try {
        return await withTimeout(call(m.client, block), this.opts.callTimeoutMs, `call to ${m.id}`);
      } catch (err) {
        // A worker that restarted or missed a state update asks for it again: resend once.
        if (err instanceof StaleVersionError && err.what === "state" && attempt === 0) {
          m.stateVersion = undefined;
          continue;
        }
        throw err;
      }
    }
  }

  async close(): Promise<void> {
    this.unsubscribe?.();
    await this.opts.membership?.close();
    await Promise.all([...this.members.values()].map((m) => m.client.close().catch(() => {})));
  }
}

/** Contiguous blocks as even as possible, the first ones one larger. */
export function splitBlocks<T>(items: T[], n: number): T[][] {
  const k = Math.min(n, items.length);
  const base = Math.floor(items.length / k);
  const extra = items.length % k;
  const out: T[][] = [];
  for (let i = 0, s = 0; i < k; i++) {
    const len = base + (i < extra ? 1 : 0);
    out.push(items.slice(s, s + len));
    s += len;
  }
  return out;
}
