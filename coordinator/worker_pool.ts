/**
 * The coordinator's workers: handshake, version-keyed state, and fanning micro-shards out as contiguous
 * blocks. A worker that fails, times out or sends a malformed reply loses its block to the others within
 * the same step; a late block is re-issued to an idle worker and the first valid answer wins (speculative
 * re-execution, docs/design.md "Stragglers"); workers join (and failed ones are retried) only at step
 * boundaries. Results always come back in micro-shard order, and each shard's result is a function of the
 * shard alone, so which worker computed what never changes the numbers.
 */
import { log } from "../common/log.js";
import type { Membership, MembershipEvent, WorkerEndpoint } from "../common/membership/types.js";
import {
  type CallControl,
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
  /**
   * A compute call of this worker is in flight, perhaps one the pool no longer waits for (the loser of a
   * re-issued block whose transport cannot cancel): the worker gets no other call until it ends.
   */
  busy: boolean;
  /**
   * How many times the median time per shard of its peers this worker takes, smoothed over the maps that
   * timed it beside others; undefined until then. Idle workers are given blocks fastest first.
   */
  pace?: number;
}

/** Which copy of a re-issued block answered first. */
export type ReissueWinner = "original" | "copy";

export interface PoolEvents {
  joined(member: PoolMember): void;
  failed(member: PoolMember, reason: string): void;
  left(member: PoolMember, reason: string): void;
  /** `copy` re-runs `shards` of the block `late` has been computing for `lateMs` (a straggler). */
  reissued(copy: PoolMember, late: PoolMember, shards: readonly number[], lateMs: number): void;
  /** The race between a re-issued block's copy and its original ended: `winner` answered first. */
  reissueSettled(copy: PoolMember, late: PoolMember, winner: ReissueWinner): void;
}

export interface SpeculationOptions {
  /**
   * A block is late once it has run `lateFactor` times the median time per shard of the blocks already
   * answered in the same map, times its own shard count.
   */
  readonly lateFactor: number;
}

/** Spark's speculation multiplier: a block half again slower than its peers' median is late. */
export const DEFAULT_LATE_FACTOR = 1.5;

/** Weight of the newest map in a worker's pace: a worker that speeds up again is trusted within a few. */
const PACE_SMOOTHING = 0.5;

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
  /**
   * Re-issue late blocks to idle workers (default on, `lateFactor` DEFAULT_LATE_FACTOR); false: every
   * block waits for the worker it was given, as slow as that worker is.
   */
  readonly speculation?: SpeculationOptions | false;
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

/** One compute call: a block of shards on one worker. */
interface Attempt {
  readonly member: PoolMember;
  readonly shards: readonly MicroShard[];
  readonly started: number;
  readonly abort: AbortController;
  /** For a speculative copy: the late call whose shards (some or all) it re-runs. */
  readonly copyOf?: Attempt;
  /** Answered, failed, or cancelled: nothing it sends counts any more. */
  over: boolean;
}

interface Settled<R> {
  readonly attempt: Attempt;
  readonly out?: R[];
  readonly err?: unknown;
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
  private readonly opts: Required<
    Omit<PoolOptions, "connect" | "membership" | "events" | "params" | "speculation">
  > &
    PoolOptions;
  private readonly speculation: SpeculationOptions | false;
  private events: Partial<PoolEvents>;
  /** Woken whenever a compute call ends, in this map or a finished one (its worker is free again). */
  private readonly wakers = new Set<() => void>();

  constructor(initial: WorkerClient[], opts: PoolOptions = {}) {
    this.opts = {
      callTimeoutMs: Number.POSITIVE_INFINITY,
      waitForWorkersMs: 120_000,
      retryBaseMs: 2_000,
      maxConsecutiveFailures: 5,
      ...opts,
    };
    this.speculation = opts.speculation ?? { lateFactor: DEFAULT_LATE_FACTOR };
    if (this.speculation && !(this.speculation.lateFactor >= 1))
      throw new Error(`worker pool: speculation lateFactor ${this.speculation.lateFactor} is not ≥ 1`);
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
    const m: PoolMember = { id, client, endpoint, status: "failed", failures: 0, retryAt: 0, busy: false };
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
   * Runs `call` over the shards: contiguous blocks, one per idle ready worker. A failed block is redone on
   * the workers free at the time; once every shard is out, a late block is re-issued to the idle workers
   * and whichever copy answers a shard first gives its result, the other being cancelled.
   */
  async map<R extends { index: number }>(
    shards: MicroShard[],
    call: (worker: WorkerClient, shards: MicroShard[], control: CallControl) => Promise<R[]>,
  ): Promise<R[]> {
    const run = new MapRun<R>(shards);
    const launch = (m: PoolMember, block: MicroShard[], copyOf?: Attempt) => {
      const a = run.start(m, block, copyOf);
      this.callMember(m, block, call, a.abort.signal).then(
        (out) => this.ended(a, () => run.inbox.push({ attempt: a, out })),
        (err: unknown) => this.ended(a, () => run.inbox.push({ attempt: a, err })),
      );
    };
    while (!run.done) {
      for (const settled of run.inbox.splice(0)) this.settle(run, settled);
      if (run.done) break;
      const idle = this.idleFastestFirst();
      let wakeAt: number | undefined;
      if (run.unassigned.length && idle.length) {
        const blocks = this.blocksFor(run.unassigned, idle);
        run.unassigned = [];
        for (const [k, block] of blocks.entries()) launch(idle[k], block);
        continue;
      }
      if (run.unassigned.length && this.size === 0) {
        await this.waitForAny();
        continue;
      }
      if (!run.unassigned.length && idle.length && this.speculation) {
        const late = run.late(this.speculation.lateFactor, performance.now());
        if (late.attempt) {
          const original = late.attempt;
          const lateMs = performance.now() - original.started;
          for (const [k, block] of this.blocksFor(late.shards, idle).entries()) {
            const indices = block.map((s) => s.index);
            this.events.reissued?.(idle[k], original.member, indices, lateMs);
            log.info(
              { late: original.member.id, copy: idle[k].id, shards: indices, lateMs: Math.round(lateMs) },
              "re-issued a late block",
            );
            launch(idle[k], block, original);
          }
          continue;
        }
        wakeAt = late.at;
      }
      await this.nextEnd(wakeAt);
    }
    learnPaces(run.timings, run.msPerShard);
    return shards.map((s) => run.results.get(s.index)!);
  }

  /**
   * Takes one call's outcome into its map: the first valid answer of a shard is its result, a call whose
   * every shard is answered elsewhere is cancelled, a failed worker is marked and the shards no other call
   * covers go back to be assigned.
   */
  private settle<R extends { index: number }>(run: MapRun<R>, { attempt: a, out, err }: Settled<R>): void {
    run.running.delete(a);
    // Cancelled as a loser: slow is not failed, and its answer (if any arrived) is not counted again.
    if (a.over) return;
    a.over = true;
    let failure = err;
    if (out) {
      const want = new Set(a.shards.map((s) => s.index));
      if (out.length !== a.shards.length || out.some((r) => !want.has(r.index))) {
        failure = new ShardMismatchError(
          `${a.member.id} answered shards [${out.map((r) => r.index)}] for [${[...want]}]`,
        );
      }
    }
    if (failure !== undefined || !out) {
      this.markFailed(a.member, (failure as Error).message, isMalformedReply(failure));
      run.requeue(a.shards.filter((s) => !run.results.has(s.index) && !run.covered(s)));
      return;
    }
    a.member.failures = 0;
    const ms = (performance.now() - a.started) / a.shards.length;
    run.msPerShard.push(ms);
    run.timings.push({ member: a.member, msPerShard: ms });
    for (const r of out) if (!run.results.has(r.index)) run.results.set(r.index, r);
    if (a.copyOf) this.events.reissueSettled?.(a.member, a.copyOf.member, "copy");
    for (const b of run.running) {
      if (!b.shards.every((s) => run.results.has(s.index))) continue;
      b.over = true;
      b.abort.abort();
      // At least this slow: its time so far is a lower bound of its pace.
      run.timings.push({ member: b.member, msPerShard: (performance.now() - b.started) / b.shards.length });
      run.running.delete(b);
      if (b.copyOf === a) this.events.reissueSettled?.(b.member, a.member, "original");
    }
  }

  /**
   * Ready workers without a call in flight. With the straggler policy on, fastest first by pace, so a round
   * with fewer shards than workers (a covariance round of one shard) leaves out the slowest.
   */
  private idleFastestFirst(): PoolMember[] {
    const idle = this.ready().filter((m) => !m.busy);
    if (!this.speculation) return idle;
    return idle.sort((a, b) => (a.pace ?? 1) - (b.pace ?? 1));
  }

  /**
   * One block per worker: with the policy on, a worker whose pace is past the late factor gets a block in
   * proportion to its speed (1 / pace) and the others even ones (their paces differ by noise only); else
   * even blocks.
   */
  private blocksFor(shards: MicroShard[], workers: readonly PoolMember[]): MicroShard[][] {
    const policy = this.speculation;
    if (!policy) return splitBlocks(shards, workers.length);
    const pace = (m: PoolMember) => (m.pace !== undefined && m.pace > policy.lateFactor ? m.pace : 1);
    return splitByWeight(
      shards,
      workers.map((m) => 1 / pace(m)),
    );
  }

  /** A compute call ended: its worker is free; `record` hands the outcome to its map. */
  private ended(a: Attempt, record: () => void): void {
    a.member.busy = false;
    record();
    for (const wake of this.wakers) wake();
    this.wakers.clear();
  }

  /** Resolves when a compute call ends, or at `at` (performance.now() time) if that comes first. */
  private nextEnd(at?: number): Promise<void> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const wake = () => {
        clearTimeout(timer);
        this.wakers.delete(wake);
        resolve();
      };
      this.wakers.add(wake);
      if (at !== undefined) timer = setTimeout(wake, Math.max(0, at - performance.now()));
    });
  }

  private async callMember<R>(
    m: PoolMember,
    block: MicroShard[],
    call: (worker: WorkerClient, shards: MicroShard[], control: CallControl) => Promise<R[]>,
    signal: AbortSignal,
  ): Promise<R[]> {
    for (let attempt = 0; ; attempt++) {
      await this.ensureState(m);
      try {
        return await withTimeout(
          call(m.client, block, { signal }),
          this.opts.callTimeoutMs,
          `call to ${m.id}`,
        );
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

/** One map(): which shards are answered, which are out on which worker, how long the answers took. */
class MapRun<R extends { index: number }> {
  readonly results = new Map<number, R>();
  /** Shards no call in flight covers, in index order. */
  unassigned: MicroShard[];
  readonly running = new Set<Attempt>();
  /** Outcomes of calls that ended, not yet taken in. */
  readonly inbox: Settled<R>[] = [];
  /** Milliseconds per shard of the calls answered so far: the yardstick of lateness. */
  readonly msPerShard: number[] = [];
  /** Per worker timed: ms per shard of its answer, or of its cancelled call until cancelled. */
  readonly timings: Array<{ member: PoolMember; msPerShard: number }> = [];

  constructor(private readonly shards: readonly MicroShard[]) {
    this.unassigned = [...shards];
  }

  get done(): boolean {
    return this.results.size === this.shards.length;
  }

  start(member: PoolMember, shards: MicroShard[], copyOf?: Attempt): Attempt {
    const a: Attempt = {
      member,
      shards,
      started: performance.now(),
      abort: new AbortController(),
      copyOf,
      over: false,
    };
    this.running.add(a);
    member.busy = true;
    return a;
  }

  requeue(shards: readonly MicroShard[]): void {
    if (shards.length) this.unassigned = [...this.unassigned, ...shards].sort((x, y) => x.index - y.index);
  }

  /** Whether a call in flight computes shard `s`. */
  covered(s: MicroShard): boolean {
    for (const a of this.running) if (a.shards.includes(s)) return true;
    return false;
  }

  /**
   * The speculation policy: the oldest call in flight past `lateFactor` × the median time per shard × its
   * shard count, with those of its shards that are unanswered and that no other call covers (so a shard
   * runs at most twice at once); else when the next call will be late. Before any answer there is no
   * yardstick, and no call is late.
   */
  late(lateFactor: number, now: number): { attempt?: Attempt; shards: MicroShard[]; at?: number } {
    if (this.msPerShard.length === 0) return { shards: [] };
    const yardstick = median(this.msPerShard);
    const byAge = [...this.running].sort((a, b) => a.started - b.started);
    let next: number | undefined;
    for (const a of byAge) {
      const alone = a.shards.filter(
        (s) => !this.results.has(s.index) && byAge.every((b) => b === a || !b.shards.includes(s)),
      );
      if (!alone.length) continue;
      const at = a.started + lateFactor * yardstick * a.shards.length;
      if (at <= now) return { attempt: a, shards: alone };
      next = next === undefined ? at : Math.min(next, at);
    }
    return { shards: [], at: next };
  }
}

function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * Folds one map's timings into its workers' paces (time per shard over the map's median). A map that
 * timed a single worker has nothing to compare it with and changes nothing.
 */
function learnPaces(
  timings: readonly { member: PoolMember; msPerShard: number }[],
  answered: number[],
): void {
  if (new Set(timings.map((t) => t.member)).size < 2) return;
  const yardstick = median(answered);
  if (!(yardstick > 0)) return;
  for (const { member, msPerShard } of timings) {
    const ratio = msPerShard / yardstick;
    member.pace =
      member.pace === undefined ? ratio : PACE_SMOOTHING * ratio + (1 - PACE_SMOOTHING) * member.pace;
  }
}

/**
 * Contiguous blocks in proportion to `weights` (by largest remainders, ties to the first), each at least
 * one item: every worker given a block keeps being timed. Equal weights give splitBlocks' cut.
 */
export function splitByWeight<T>(items: T[], weights: readonly number[]): T[][] {
  const k = Math.min(weights.length, items.length);
  const w = weights.slice(0, k).map((x) => (Number.isFinite(x) && x > 0 ? x : 1));
  const total = w.reduce((a, b) => a + b, 0);
  const rest = items.length - k;
  const exact = w.map((x) => (rest * x) / total);
  const sizes = exact.map((x) => 1 + Math.floor(x));
  const byRemainder = exact
    .map((x, i) => ({ i, r: x - Math.floor(x) }))
    .sort((a, b) => b.r - a.r || a.i - b.i);
  for (let left = items.length - sizes.reduce((a, b) => a + b, 0), j = 0; left > 0; left--, j++)
    sizes[byRemainder[j].i]++;
  const out: T[][] = [];
  for (let i = 0, s = 0; i < k; s += sizes[i], i++) out.push(items.slice(s, s + sizes[i]));
  return out;
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
