/**
 * The coordinator's worker pool with scripted in-process workers: reassignment, budget, stale state, and
 * the straggler policy (late blocks re-issued, first answer wins).
 */
import { describe, expect, it } from "vitest";
import {
  type CallControl,
  type MicroShard,
  PROTOCOL_VERSION,
  StaleVersionError,
  type TaskState,
  type TrainParams,
  type TrainStepRequest,
  type TrainStepResult,
  type WorkerClient,
} from "../../common/protocol.js";
import {
  DEFAULT_LATE_FACTOR,
  NoWorkersError,
  type PoolEvents,
  splitBlocks,
  splitByWeight,
  WorkerPool,
} from "../../coordinator/worker_pool.js";

class Scripted implements WorkerClient {
  calls = 0;
  states: number[] = [];
  constructor(
    readonly name: string,
    private readonly behaviour: (call: number) => "ok" | "fail" | "stale" | "wrong-shards",
  ) {}
  async setup() {
    return {
      workerId: this.name,
      protocolVersion: PROTOCOL_VERSION,
      weightsFingerprint: "f",
      backend: "x",
      device: "y",
    };
  }
  async setTaskState(s: TaskState) {
    this.states.push(s.version);
  }
  async covariance() {
    return [];
  }
  async evaluate() {
    return [];
  }
  async trainStep(req: TrainStepRequest): Promise<TrainStepResult[]> {
    const b = this.behaviour(++this.calls);
    if (b === "fail") throw new Error(`${this.name} broke`);
    if (b === "stale") throw new StaleVersionError("state", req.stateVersion);
    return req.shards.map((s) => ({
      index: b === "wrong-shards" ? s.index + 100 : s.index,
      count: s.samples.length,
      lossSum: 0,
      correct: 0,
      gradAk: [],
      gradAv: [],
      gradHeadW: Float32Array.of(s.index),
      gradHeadB: new Float32Array(0),
    }));
  }
  async close() {}
}

const setup = {
  runId: "r",
  protocolVersion: PROTOCOL_VERSION,
  weightsPath: "/w",
  weightsFingerprint: "f",
  model: { imgSize: 32, patchSize: 4, inChans: 3, embedDim: 8, depth: 1, numHeads: 1, mlpHidden: 8 },
  data: { dataset: "idx", dataPath: "/d", imageSize: 32 },
};
const shards: MicroShard[] = Array.from({ length: 5 }, (_, i) => ({
  index: i,
  split: "train",
  samples: Int32Array.of(i),
}));
const state: TaskState = { version: 7, task: 0, finished: [], heads: [] };
const step = (pool: WorkerPool) =>
  pool.map(shards, (w, s, c) => w.trainStep({ stateVersion: 7, params: { version: 1 }, shards: s }, c));

describe("worker pool", () => {
  it("moves a failed worker's shards to the others within the same call, results in shard order", async () => {
    const bad = new Scripted("bad", () => "fail");
    const good = new Scripted("good", () => "ok");
    const failed: string[] = [];
    const pool = new WorkerPool([bad, good], { events: { failed: (m) => failed.push(m.id) } });
    await pool.start(setup);
    await pool.publishState(state);
    const out = await step(pool);
    expect(out.map((r) => r.index)).toEqual([0, 1, 2, 3, 4]);
    expect(out.map((r) => r.gradHeadW[0])).toEqual([0, 1, 2, 3, 4]);
    expect(failed).toEqual(["bad"]);
    expect(pool.size).toBe(1);
  });

  it("quarantines a worker that keeps failing after successful handshakes (restart budget)", async () => {
    const flaky = new Scripted("flaky", () => "fail");
    const good = new Scripted("good", () => "ok");
    const pool = new WorkerPool([flaky, good], { retryBaseMs: 1, maxConsecutiveFailures: 3 });
    await pool.start(setup);
    await pool.publishState(state);
    for (let k = 0; k < 6; k++) {
      await new Promise((r) => setTimeout(r, 5));
      await pool.boundary();
      await step(pool);
    }
    const member = pool.list().find((m) => m.id === "flaky")!;
    expect(member.status).toBe("quarantined");
    expect(flaky.calls).toBe(3);
  });

  it("fails the run at once when every worker of a fixed list is quarantined", async () => {
    const a = new Scripted("a", () => "fail");
    const pool = new WorkerPool([a], { retryBaseMs: 1, maxConsecutiveFailures: 1, waitForWorkersMs: 60_000 });
    await pool.start(setup);
    await pool.publishState(state);
    await expect(step(pool)).rejects.toThrow(NoWorkersError);
    await expect(step(pool)).rejects.toThrow(/every worker is quarantined: a/);
  });

  it("quarantines at once a worker that answers for shards it was not given", async () => {
    const liar = new Scripted("liar", () => "wrong-shards");
    const good = new Scripted("good", () => "ok");
    const pool = new WorkerPool([liar, good], { retryBaseMs: 1 });
    await pool.start(setup);
    await pool.publishState(state);
    const out = await step(pool);
    expect(out.map((r) => r.index)).toEqual([0, 1, 2, 3, 4]);
    expect(pool.list().find((m) => m.id === "liar")!.status).toBe("quarantined");
    expect(liar.calls).toBe(1);
  });

  it("publishes each step's parameters through the transports' publisher, with the model's width", async () => {
    const published: [number, number][] = [];
    const pool = new WorkerPool([new Scripted("w", () => "ok")], {
      params: { publish: (p: TrainParams, D: number) => published.push([p.version, D]) },
    });
    const p: TrainParams = {
      version: 3,
      Ak: [],
      Av: [],
      head: { classes: 0, weight: new Float32Array(0), bias: new Float32Array(0) },
    };
    expect(() => pool.publishParams(p)).toThrow(/before start/);
    await pool.start(setup);
    pool.publishParams(p);
    expect(published).toEqual([[3, setup.model.embedDim]]);
    // Without a publisher the call does nothing: the transports send the parameters with each call.
    const plain = new WorkerPool([new Scripted("v", () => "ok")]);
    await plain.start(setup);
    expect(() => plain.publishParams(p)).not.toThrow();
  });

  it("resends the state once to a worker that reports it stale", async () => {
    const w = new Scripted("w", (call) => (call === 1 ? "stale" : "ok"));
    const pool = new WorkerPool([w]);
    await pool.start(setup);
    await pool.publishState(state);
    const out = await step(pool);
    expect(out).toHaveLength(5);
    expect(w.states).toEqual([7, 7]);
  });
});

/**
 * A worker whose training calls take `msPerShard` per shard (or, given a function, per shard of its n-th
 * call, from 1) and tag each gradient with its name's code,
 * so a test can tell whose answer the pool kept. `cancellable` workers stop at the pool's abort (as gRPC
 * calls do); the others finish and answer anyway (as an in-process engine does).
 */
class Timed implements WorkerClient {
  calls: number[][] = [];
  aborted = 0;
  answered = 0;
  constructor(
    readonly name: string,
    public msPerShard: number | ((call: number) => number),
    private readonly cancellable = true,
  ) {}
  async setup() {
    return {
      workerId: this.name,
      protocolVersion: PROTOCOL_VERSION,
      weightsFingerprint: "f",
      backend: "x",
      device: "y",
    };
  }
  async setTaskState() {}
  async covariance() {
    return [];
  }
  async evaluate() {
    return [];
  }
  trainStep(req: TrainStepRequest, control?: CallControl): Promise<TrainStepResult[]> {
    this.calls.push(req.shards.map((s) => s.index));
    const ms = typeof this.msPerShard === "number" ? this.msPerShard : this.msPerShard(this.calls.length);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.answered++;
        resolve(
          req.shards.map((s) => ({
            index: s.index,
            count: s.samples.length,
            lossSum: s.index,
            correct: 0,
            gradAk: [],
            gradAv: [],
            gradHeadW: Float32Array.of(s.index, this.name.charCodeAt(0)),
            gradHeadB: new Float32Array(0),
          })),
        );
      }, ms * req.shards.length);
      control?.signal?.addEventListener("abort", () => {
        this.aborted++;
        if (!this.cancellable) return;
        clearTimeout(timer);
        reject(new Error(`${this.name}: cancelled`));
      });
    });
  }
  async close() {}
}

/** The pool's events about workers and re-issued blocks, as readable lines. */
function recorder() {
  const seen: string[] = [];
  const events: Partial<PoolEvents> = {
    failed: (m, reason) => seen.push(`failed ${m.id}: ${reason}`),
    reissued: (copy, late, shards) => seen.push(`reissued [${shards}] of ${late.id} to ${copy.id}`),
    reissueSettled: (copy, late, winner) => seen.push(`settled ${copy.id} vs ${late.id}: ${winner}`),
  };
  return { seen, events };
}

/** Who computed each shard's kept answer (the tag's character). */
const computedBy = (out: TrainStepResult[]) => out.map((r) => String.fromCharCode(r.gradHeadW[1]));

describe("worker pool: stragglers", () => {
  it("re-issues a late block to the idle workers; the first answer wins and the late call is cancelled", async () => {
    // s(low) gets [0, 1], f [2, 3], g [4]; at 1.5 × 20 ms × 2 the slow block is late and split over f and g.
    const slow = new Timed("s", 1_000);
    const f = new Timed("f", 20);
    const g = new Timed("g", 20);
    const { seen, events } = recorder();
    const pool = new WorkerPool([slow, f, g], { events });
    await pool.start(setup);
    await pool.publishState(state);
    const started = performance.now();
    const out = await step(pool);
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(out.map((r) => r.index)).toEqual([0, 1, 2, 3, 4]);
    expect(computedBy(out)).toEqual(["f", "g", "f", "f", "g"]);
    expect(seen).toEqual([
      "reissued [0] of s to f",
      "reissued [1] of s to g",
      "settled f vs s: copy",
      "settled g vs s: copy",
    ]);
    expect(f.calls).toEqual([[2, 3], [0]]);
    expect(g.calls).toEqual([[4], [1]]);
    expect(slow.aborted).toBe(1);
    expect(slow.answered).toBe(0);
    // Slow is not failed: the straggler stays in the pool and, once its cancelled call has ended (a tick
    // later), gets a block at the next step: the last and smallest, as its pace is the slowest.
    expect(pool.list().map((m) => m.status)).toEqual(["ready", "ready", "ready"]);
    expect(pool.list()[0].pace).toBeGreaterThan(DEFAULT_LATE_FACTOR);
    await new Promise((r) => setTimeout(r, 0));
    slow.msPerShard = 20;
    const again = await step(pool);
    expect(computedBy(again).map((w) => w === "s")).toEqual([false, false, false, false, true]);
  });

  it("keeps the original's answer when it comes first, cancels the copy, and counts every shard once", async () => {
    // l holds [0, 1, 2] for 900 ms; z answers [3, 4] in 2 ms, so l is late at 1.5 × 1 × 3 ms and its block
    // goes to z, whose second call is slower still: the original wins the race.
    const late = new Timed("l", 300);
    const z = new Timed("z", (call) => (call === 1 ? 1 : 3_000));
    const { seen, events } = recorder();
    const pool = new WorkerPool([late, z], { events });
    await pool.start(setup);
    await pool.publishState(state);
    const out = await step(pool);
    expect(out.map((r) => r.index)).toEqual([0, 1, 2, 3, 4]);
    expect(out.map((r) => r.lossSum)).toEqual([0, 1, 2, 3, 4]);
    expect(computedBy(out)).toEqual(["l", "l", "l", "z", "z"]);
    expect(seen).toEqual(["reissued [0,1,2] of l to z", "settled z vs l: original"]);
    expect(z.calls).toEqual([
      [3, 4],
      [0, 1, 2],
    ]);
    expect([z.answered, z.aborted]).toEqual([1, 1]);
    expect(pool.list().every((m) => m.status === "ready")).toBe(true);
  });

  it("ignores a loser that cannot be cancelled and gives its worker no new call until it has answered", async () => {
    const slow = new Timed("s", 150, false);
    const f = new Timed("f", 5);
    const g = new Timed("g", 5);
    const pool = new WorkerPool([slow, f, g]);
    await pool.start(setup);
    await pool.publishState(state);
    const out = await step(pool);
    expect(computedBy(out)).toEqual(["f", "g", "f", "f", "g"]);
    expect(slow.answered).toBe(0);
    // The next step starts while the loser still runs: its worker is busy, the others take everything.
    const next = await step(pool);
    expect(computedBy(next)).not.toContain("s");
    expect(slow.calls).toEqual([[0, 1]]);
    await new Promise((r) => setTimeout(r, 400));
    expect(slow.answered).toBe(1);
    slow.msPerShard = 5;
    expect(computedBy(await step(pool))).toContain("s");
  });

  it("gives blocks fastest first: a one-shard round skips a known straggler, who is trusted again once fast", async () => {
    const slow = new Timed("s", 1_000);
    const f = new Timed("f", 40);
    const g = new Timed("g", 40);
    const pool = new WorkerPool([slow, f, g]);
    await pool.start(setup);
    await pool.publishState(state);
    await step(pool);
    await new Promise((r) => setTimeout(r, 0));
    const paceWhenSlow = pool.list()[0].pace!;
    expect(paceWhenSlow).toBeGreaterThan(DEFAULT_LATE_FACTOR);
    const one = (p: WorkerPool) =>
      p.map([shards[0]], (w, s, c) => w.trainStep({ stateVersion: 7, params: { version: 1 }, shards: s }, c));
    expect(computedBy(await one(pool))).not.toEqual(["s"]);
    // Fast again: a few steps beside the others bring its pace back under the late factor (even blocks).
    slow.msPerShard = 40;
    const paces: number[] = [];
    for (let k = 0; k < 8; k++) {
      await step(pool);
      paces.push(pool.list()[0].pace!);
    }
    expect(Math.min(...paces)).toBeLessThan(DEFAULT_LATE_FACTOR);
  });

  it("with speculation off, every block waits for its own worker", async () => {
    const slow = new Timed("s", 100);
    const f = new Timed("f", 5);
    const g = new Timed("g", 5);
    const { seen, events } = recorder();
    const pool = new WorkerPool([slow, f, g], { events, speculation: false });
    await pool.start(setup);
    await pool.publishState(state);
    const out = await step(pool);
    expect(computedBy(out)).toEqual(["s", "s", "f", "f", "g"]);
    expect(seen).toEqual([]);
    expect(f.calls).toEqual([[2, 3]]);
  });

  it("a failed copy is re-issued again while the original runs; a straggler's deadline still applies", async () => {
    // x answers its own block, then fails the copy of [1] it is given: s still covers [1], which is
    // re-issued to f; s is cancelled, not failed.
    const x = new Timed("x", 20);
    const own = x.trainStep.bind(x);
    x.trainStep = (req, control) =>
      x.calls.length === 0 ? own(req, control) : Promise.reject(new Error("x broke"));
    const { seen, events } = recorder();
    const pool = new WorkerPool([new Timed("s", 10_000), new Timed("f", 20), x], {
      events,
      retryBaseMs: 60_000,
    });
    await pool.start(setup);
    await pool.publishState(state);
    const out = await step(pool);
    expect(computedBy(out)).toEqual(["f", "f", "f", "f", "x"]);
    expect(seen).toEqual([
      "reissued [0] of s to f",
      "reissued [1] of s to x",
      "failed x: x broke",
      "settled f vs s: copy",
      "reissued [1] of s to f",
      "settled f vs s: copy",
    ]);
    expect(pool.list().find((m) => m.id === "s")!.status).toBe("ready");

    // Both s and its copy on f (slow from its second call on) run past the deadline: each is failed by it,
    // and the shards are redone once the workers are retried.
    const f = new Timed("f", (call) => (call === 2 ? 10_000 : 5));
    const s2 = new Timed("s", (call) => (call === 1 ? 10_000 : 5));
    const timed = recorder();
    const pool2 = new WorkerPool([s2, f], { events: timed.events, callTimeoutMs: 300, retryBaseMs: 10 });
    await pool2.start(setup);
    await pool2.publishState(state);
    const out2 = await step(pool2);
    expect(out2.map((r) => r.lossSum)).toEqual([0, 1, 2, 3, 4]);
    expect(timed.seen.slice(0, 3)).toEqual([
      "reissued [0,1,2] of s to f",
      "failed s: call to s exceeded its 300 ms deadline",
      "failed f: call to f exceeded its 300 ms deadline",
    ]);
  });
});

describe("splitByWeight", () => {
  const items = (n: number) => Array.from({ length: n }, (_, i) => i);
  const sizes = (blocks: number[][]) => blocks.map((b) => b.length);

  it("cuts as splitBlocks does for equal weights", () => {
    for (const n of [1, 2, 4, 5, 12, 17])
      for (const k of [1, 2, 3, 4, 8]) {
        expect(splitByWeight(items(n), Array(k).fill(1))).toEqual(splitBlocks(items(n), k));
      }
  });

  it("sizes blocks by weight, contiguous, each at least one item, none lost", () => {
    // A worker 5× slower (weight 0.2) beside two: 12 shards → 9 shared out after one each: 4.09, 4.09, 0.82.
    expect(sizes(splitByWeight(items(12), [1, 1, 0.2]))).toEqual([5, 5, 2]);
    expect(sizes(splitByWeight(items(4), [1, 1, 0.2]))).toEqual([2, 1, 1]);
    expect(sizes(splitByWeight(items(16), [3, 1]))).toEqual([12, 4]);
    const blocks = splitByWeight(items(10), [0.1, 5, 2, Number.NaN]);
    expect(blocks.flat()).toEqual(items(10));
    expect(sizes(blocks).every((n) => n >= 1)).toBe(true);
    expect(sizes(splitByWeight(items(2), [1, 1, 1]))).toEqual([1, 1]);
  });
});
