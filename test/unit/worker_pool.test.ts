/** The coordinator's worker pool with scripted in-process workers: reassignment, budget, stale state. */
import { describe, expect, it } from "vitest";
import {
  type MicroShard,
  PROTOCOL_VERSION,
  StaleVersionError,
  type TaskState,
  type TrainParams,
  type TrainStepRequest,
  type TrainStepResult,
  type WorkerClient,
} from "../../common/protocol.js";
import { NoWorkersError, WorkerPool } from "../../coordinator/worker_pool.js";

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
  pool.map(shards, (w, s) => w.trainStep({ stateVersion: 7, params: { version: 1 }, shards: s }));

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
