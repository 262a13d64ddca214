/**
 * gRPC clients on transport threads behave as direct ones, over real gRPC: the same results, the same
 * error classes and fields (the worker pool's quarantine / resend / retry decisions depend on them),
 * and a thread that dies fails only its calls in flight and is replaced.
 */
import { Worker } from "node:worker_threads";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import {
  type MicroShard,
  StaleVersionError,
  type TrainParams,
  type TrainStepResult,
  type WorkerClient,
} from "../../common/protocol.js";
import { startThread } from "../../coordinator/threads/call_thread.js";
import {
  GrpcWorkerClient,
  MalformedReplyError,
  WorkerRpcError,
} from "../../coordinator/transport/grpc_client.js";
import { TransportThreads } from "../../coordinator/transport/threaded_client.js";
import { serveWorker, type WorkerServerHandle } from "../../worker/grpc_server.js";
import { FakeWorker, rejection, setupRequest } from "./grpc_helpers.js";

const D = 8;
const depth = 2;
const r = 2;
const worker = new FakeWorker();
let server: WorkerServerHandle;
let threads: TransportThreads;
const spawned: Worker[] = [];
let direct: GrpcWorkerClient;
let onThread0: WorkerClient;
let onThread1: WorkerClient;

const values = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(seed + i));
const shards: MicroShard[] = [
  { index: 0, split: "train", samples: Int32Array.of(4, 5), targets: Int32Array.of(0, 2) },
  { index: 1, split: "train", samples: Int32Array.of(6), targets: Int32Array.of(1) },
];
const params: TrainParams = {
  version: 3,
  Ak: [values(D * r, 1), values(D * r, 2)],
  Av: [values(D * r, 3), values(D * r, 4)],
  head: { classes: 3, weight: values(3 * D, 5), bias: values(3, 6) },
};
const grads = (s: MicroShard): TrainStepResult => ({
  index: s.index,
  count: s.samples.length,
  lossSum: 0.25 * s.index + 1,
  correct: 1,
  gradAk: [values(D * r, 10 + s.index), values(D * r, 20 + s.index)],
  gradAv: [values(D * r, 30 + s.index), values(D * r, 40 + s.index)],
  gradHeadW: values(3 * D, 50 + s.index),
  gradHeadB: values(3, 60 + s.index),
});

beforeAll(async () => {
  server = await serveWorker({ worker, listen: "127.0.0.1:0" });
  const of = new URL("../../coordinator/transport/threaded_client.ts", import.meta.url).href;
  threads = new TransportThreads(2, () => {
    const w = startThread("transport_thread", of);
    spawned.push(w);
    return w;
  });
  const options = { address: server.address, name: "worker-a", releaseOnClose: false };
  direct = new GrpcWorkerClient(options);
  onThread0 = threads.connect(options);
  onThread1 = threads.connect(options);
  for (const c of [direct, onThread0, onThread1]) await c.setup(setupRequest(D, depth));
}, 60_000);

afterAll(async () => {
  for (const c of [direct, onThread0, onThread1]) await c?.close();
  await threads?.close();
  await server?.close();
});

describe("gRPC clients on transport threads", () => {
  it("return what a direct client returns: training results, covariance sums, logits", async () => {
    worker.trainReply = (req) => req.shards.map(grads);
    const want = await direct.trainStep({ stateVersion: 1, params, shards });
    for (const c of [onThread0, onThread1]) {
      const got = await c.trainStep({ stateVersion: 1, params, shards });
      expect(got).toEqual(want);
      expect(got[1].gradAv[1]).toEqual(values(D * r, 41));
      expect(got[0].gradHeadB).toBeInstanceOf(Float32Array);
    }
    // The worker got the parameters themselves from each client, bit for bit.
    const sent = worker.trainRequests.at(-1)!.params as TrainParams;
    expect(sent.Ak[1]).toEqual(params.Ak[1]);
    expect(sent.head.bias).toEqual(params.head.bias);

    // Only the version, when the worker holds it.
    await onThread1.trainStep({ stateVersion: 1, params: { version: 3 }, shards });
    expect("Ak" in worker.trainRequests.at(-1)!.params).toBe(false);

    worker.covarianceReply = (req) =>
      req.shards.map((s) => ({
        index: s.index,
        tokens: 7 * s.samples.length,
        sums: [values(D * D, 1), values(D * D, 2)],
      }));
    const covWant = await direct.covariance({ stateVersion: 1, shards: [shards[0]] });
    expect(await onThread0.covariance({ stateVersion: 1, shards: [shards[0]] })).toEqual(covWant);
  });

  it("keep the error classes and fields the worker pool decides by", async () => {
    worker.trainReply = (req) =>
      req.shards.map((s) => ({
        ...grads(s),
        gradHeadW: Float32Array.from({ length: 3 * D }, (_, i) => (i === 5 ? Number.NaN : 0)),
      }));
    const malformed = await rejection(onThread0.trainStep({ stateVersion: 1, params, shards }));
    expect(malformed).toBeInstanceOf(MalformedReplyError);
    expect(malformed).toMatchObject({
      worker: "worker-a",
      method: "trainStep",
      field: "shard 0.grad_head_w",
    });
    expect(malformed.message).toContain("element 5 is NaN");

    worker.trainReply = () => {
      throw new StaleVersionError("params", 3);
    };
    const stale = await rejection(onThread1.trainStep({ stateVersion: 1, params: { version: 3 }, shards }));
    expect(stale).toBeInstanceOf(StaleVersionError);
    expect(stale).toMatchObject({ what: "params", wanted: 3 });

    worker.trainReply = () => {
      throw new Error("out of memory on the device");
    };
    const failed = await rejection(onThread0.trainStep({ stateVersion: 1, params, shards }));
    expect(failed).toBeInstanceOf(WorkerRpcError);
    expect(failed).toMatchObject({ worker: "worker-a", method: "trainStep", code: 13 });
    expect(failed.message).toContain("out of memory on the device");
  });

  it("a thread that dies fails its calls in flight, is replaced, and its clients work after a new setup", async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    worker.trainReply = ((req: { shards: MicroShard[] }) => held.then(() => req.shards.map(grads))) as never;
    const inFlight = onThread0.trainStep({ stateVersion: 1, params, shards });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const before = spawned.length;
    await spawned[0].terminate();
    const err = await rejection(inFlight);
    expect(err.message).toMatch(/transport thread 0: exited/);
    release();
    expect(spawned.length).toBe(before + 1);

    // The other thread never noticed.
    worker.trainReply = (req) => req.shards.map(grads);
    expect(await onThread1.trainStep({ stateVersion: 1, params, shards })).toHaveLength(2);
    // The replacement holds no run until the pool's next handshake, as after a worker restart.
    expect((await rejection(onThread0.trainStep({ stateVersion: 1, params, shards }))).message).toMatch(
      /before setup/,
    );
    await onThread0.setup(setupRequest(D, depth));
    const again = await onThread0.trainStep({ stateVersion: 1, params, shards });
    expect(again[0].gradAk[0]).toEqual(values(D * r, 10));
  });

  it("cancel a call whose signal aborts (CANCELLED), directly and through a thread; the worker skips it", async () => {
    // The worker runs one call at a time: hold it in a first call while the others wait behind it.
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    const answer = FakeWorker.prototype.trainStep;
    let holding = false;
    worker.trainReply = (req) => req.shards.map(grads);
    worker.trainStep = async function (this: FakeWorker, req) {
      if (req.shards[0].index === 1) {
        holding = true;
        await held;
      }
      return answer.call(this, req);
    };
    try {
      const before = worker.trainRequests.length;
      const first = direct.trainStep({ stateVersion: 1, params, shards: [shards[1]] });
      await vi.waitFor(() => expect(holding).toBe(true), { timeout: 10_000 });
      for (const [k, client] of [direct, onThread0].entries()) {
        const abort = new AbortController();
        const waiting = rejection(
          client.trainStep({ stateVersion: 10 + k, params, shards: [shards[0]] }, { signal: abort.signal }),
        );
        await new Promise((r) => setTimeout(r, 100));
        abort.abort();
        const err = await waiting;
        expect(err).toBeInstanceOf(WorkerRpcError);
        expect((err as WorkerRpcError).code).toBe(status.CANCELLED);
      }
      // The client settles at once; the worker hears of the cancellation a moment later.
      await new Promise((r) => setTimeout(r, 300));
      release();
      expect((await first)[0].index).toBe(1);
      // Neither cancelled call ran: the worker saw only the first one.
      await new Promise((r) => setTimeout(r, 200));
      expect(worker.trainRequests.length).toBe(before + 1);
    } finally {
      release();
      worker.trainStep = answer;
    }
  });

  it("a thread that cannot start is restarted three times, then its calls fail with the reason", async () => {
    let started = 0;
    const broken = new TransportThreads(1, () => {
      started++;
      return new Worker("process.exit(3)", { eval: true });
    });
    const client = broken.connect({ address: server.address, name: "worker-b" });
    // Each start and exit of a thread takes up to a second on a loaded machine: wait for the budget to be spent.
    await vi.waitFor(
      async () => {
        const err = await rejection(client.setup(setupRequest(D, depth)));
        expect(err.message).toBe(
          "transport thread 0 died 4 times, last: exited with code 3; not restarted again",
        );
      },
      { timeout: 60_000, interval: 100 },
    );
    expect(started).toBe(4);
    await broken.close();
  });
});
