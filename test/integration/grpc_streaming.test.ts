/**
 * ViT-B/16-sized payloads stream through real gRPC within tight message limits (4 MiB here, 16 MiB by
 * default): a covariance reply of 12 × 768² floats per shard, ten finished tasks of task state, a training
 * step's parameters and per-shard gradients, wide evaluation logits — all bit-exact. Prints the loopback
 * throughput of the covariance payload (client and server share this process's CPU: a lower bound).
 */
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CovarianceResult, TaskState, TrainParams, TrainStepResult } from "../../common/protocol.js";
import { GrpcWorkerClient, WorkerRpcError } from "../../coordinator/transport/grpc_client.js";
import { serveWorker, type WorkerServerHandle } from "../../worker/grpc_server.js";
import { mulberry32 } from "../helpers/tiny_vit.js";
import { FakeWorker, rejection, setupRequest, TOKEN } from "./grpc_helpers.js";

const D = 768;
const depth = 12;
const r = 10;
const LIMIT = 4 * 1024 * 1024;

function noise(n: number, seed: number): Float32Array {
  const rnd = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rnd() * 2 - 1;
  return out;
}

function same(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  );
}

const worker = new FakeWorker();
let server: WorkerServerHandle;
let client: GrpcWorkerClient;

beforeAll(async () => {
  delete process.env.INFLORA_TOKEN;
  server = await serveWorker({
    worker,
    listen: "127.0.0.1:0",
    security: { token: TOKEN },
    maxMessageBytes: LIMIT,
  });
  client = new GrpcWorkerClient({
    address: server.address,
    security: { token: TOKEN },
    maxMessageBytes: LIMIT,
    deadlineMs: 60_000,
  });
  await client.setup(setupRequest(D, depth));
});

afterAll(async () => {
  await client?.close();
  await server?.close();
});

describe("large payloads", () => {
  it("streams 12 × 768² float32 covariance sums per shard, bit-exact, within a 4 MiB message limit", async () => {
    const sums = Array.from({ length: depth }, (_, i) => noise(D * D, i));
    worker.covarianceReply = (req) =>
      req.shards.map((s) => ({ index: s.index, tokens: 197 * s.samples.length, sums }));
    const shards = [0, 1].map((index) => ({
      index,
      split: "train" as const,
      samples: Int32Array.of(index, 10 + index),
    }));
    let got: CovarianceResult[] = [];
    const rates: number[] = [];
    for (let rep = 0; rep < 3; rep++) {
      const started = performance.now();
      got = await client.covariance({ stateVersion: 1, shards });
      rates.push((shards.length * depth * D * D * 4) / 1e6 / ((performance.now() - started) / 1000));
    }
    expect(got.map((g) => [g.index, g.tokens])).toEqual([
      [0, 394],
      [1, 394],
    ]);
    for (const g of got)
      for (let i = 0; i < depth; i++) expect(same(g.sums[i], sums[i]), `block ${i}`).toBe(true);
    console.log(
      `covariance reply, ${((shards.length * depth * D * D * 4) / 1e6).toFixed(1)} MB per call over loopback: ${rates.map((x) => x.toFixed(0)).join(", ")} MB/s`,
    );
  });

  it("sends ten finished ViT-B/16 tasks of state (~15 MB) in per-block messages, bit-exact", async () => {
    const state: TaskState = {
      version: 7,
      task: 10,
      finished: Array.from({ length: 10 }, (_, t) => {
        const B = Array.from({ length: depth }, (_, i) => noise(r * D, 1000 * t + i));
        return {
          task: t,
          rank: r,
          Bk: B,
          Bv: B,
          Ak: B.map((_, i) => noise(D * r, 1000 * t + 100 + i)),
          Av: B.map((_, i) => noise(D * r, 1000 * t + 200 + i)),
        };
      }),
      currentB: { rank: r, B: Array.from({ length: depth }, (_, i) => noise(r * D, 50_000 + i)) },
      heads: Array.from({ length: 10 }, (_, t) => ({
        classes: 10,
        weight: noise(10 * D, 60_000 + t),
        bias: noise(10, 70_000 + t),
      })),
    };
    const started = performance.now();
    await client.setTaskState(state);
    const seconds = (performance.now() - started) / 1000;
    const got = worker.states.at(-1)!;
    expect({
      version: got.version,
      task: got.task,
      tasks: got.finished.map((f) => f.task),
      heads: got.heads.length,
    }).toEqual({
      version: 7,
      task: 10,
      tasks: [...Array(10).keys()],
      heads: 10,
    });
    for (const [t, f] of state.finished.entries()) {
      for (const key of ["Bk", "Bv", "Ak", "Av"] as const) {
        for (let i = 0; i < depth; i++)
          expect(same(got.finished[t][key][i], f[key][i]), `${t}.${key}[${i}]`).toBe(true);
      }
    }
    expect(got.currentB!.B.every((b, i) => same(b, state.currentB!.B[i]))).toBe(true);
    expect(
      got.heads.every(
        (h, i) =>
          h.classes === 10 && same(h.weight, state.heads[i].weight) && same(h.bias, state.heads[i].bias),
      ),
    ).toBe(true);
    console.log(
      `task state of 10 finished tasks (${((10 * depth * 4 * r * D * 4) / 1e6).toFixed(1)} MB) sent in ${seconds.toFixed(2)} s`,
    );
  });

  it("round-trips a ViT-B/16 training step: parameters in, per-shard gradients out, bit-exact", async () => {
    const params: TrainParams = {
      version: 3,
      Ak: Array.from({ length: depth }, (_, i) => noise(D * r, 300 + i)),
      Av: Array.from({ length: depth }, (_, i) => noise(D * r, 400 + i)),
      head: { classes: 100, weight: noise(100 * D, 5), bias: noise(100, 6) },
    };
    const reply = (index: number, count: number): TrainStepResult => ({
      index,
      count,
      lossSum: 4.25 * count,
      correct: 1,
      gradAk: Array.from({ length: depth }, (_, i) => noise(D * r, 10_000 * index + i)),
      gradAv: Array.from({ length: depth }, (_, i) => noise(D * r, 10_000 * index + 50 + i)),
      gradHeadW: noise(100 * D, 10_000 * index + 99),
      gradHeadB: noise(100, 10_000 * index + 98),
    });
    const want = [0, 1, 2, 3].map((i) => reply(i, 2));
    worker.trainReply = () => want;
    const shards = [0, 1, 2, 3].map((index) => ({
      index,
      split: "train" as const,
      samples: Int32Array.of(2 * index, 2 * index + 1),
      targets: Int32Array.of(index, 99),
    }));
    const got = await client.trainStep({ stateVersion: 7, params, shards });
    const sent = worker.trainRequests.at(-1)!;
    expect("Ak" in sent.params && sent.params.Ak.every((a, i) => same(a, params.Ak[i]))).toBe(true);
    expect("head" in sent.params && same(sent.params.head.weight, params.head.weight)).toBe(true);
    for (const [k, w] of want.entries()) {
      expect(got[k]).toMatchObject({ index: w.index, count: 2, lossSum: 8.5, correct: 1 });
      expect(
        got[k].gradAk.every((g, i) => same(g, w.gradAk[i])) &&
          got[k].gradAv.every((g, i) => same(g, w.gradAv[i])),
      ).toBe(true);
      expect(same(got[k].gradHeadW, w.gradHeadW) && same(got[k].gradHeadB, w.gradHeadB)).toBe(true);
    }
    // By version only: the header alone travels.
    await client.trainStep({ stateVersion: 7, params: { version: 3 }, shards });
    expect(worker.trainRequests.at(-1)!.params).toEqual({ version: 3 });
  });

  it("slices wide evaluation logits by rows and reassembles them", async () => {
    const n = 3000;
    const logits = noise(n * 100, 77);
    worker.evalReply = (req) => req.shards.map((s) => ({ index: s.index, logits }));
    const [res] = await client.evaluate({
      stateVersion: 7,
      shards: [{ index: 0, split: "test", samples: Int32Array.from({ length: n }, (_, i) => i) }],
    });
    expect(same(res.logits, logits)).toBe(true);
  });

  it("enforces the limits: a slice above the receiver's limit is refused, not buffered", async () => {
    const greedy = await serveWorker({
      worker,
      listen: "127.0.0.1:0",
      security: { token: TOKEN },
      chunkBytes: 8 * LIMIT,
    });
    const small = new GrpcWorkerClient({
      address: greedy.address,
      security: { token: TOKEN },
      maxMessageBytes: LIMIT,
      releaseOnClose: false,
    });
    try {
      await small.setup(setupRequest(D, depth));
      // One 8 MB slice of logits (the server slices at 32 MiB here) against a 4 MiB receiver.
      const n = 20_000;
      worker.evalReply = (req) =>
        req.shards.map((s) => ({ index: s.index, logits: new Float32Array(n * 100) }));
      const samples = Int32Array.from({ length: n }, (_, i) => i);
      const err = await rejection(
        small.evaluate({ stateVersion: 7, shards: [{ index: 0, split: "test", samples }] }),
      );
      expect(err).toBeInstanceOf(WorkerRpcError);
      expect((err as WorkerRpcError).code).toBe(status.RESOURCE_EXHAUSTED);
    } finally {
      await small.close();
      await greedy.close();
    }
  });
});
