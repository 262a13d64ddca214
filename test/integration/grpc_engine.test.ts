/**
 * A WorkerEngine behind serveWorker, driven through GrpcWorkerClient over real gRPC on loopback, gives
 * results bit-identical to a second WorkerEngine called in-process; versions the worker lacks come back as
 * StaleVersionError; the handshake and run checks refuse with FAILED_PRECONDITION and a reason.
 */
import path from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type MicroShard,
  PROTOCOL_VERSION,
  type SetupRequest,
  StaleVersionError,
  type TaskState,
  type TrainParams,
} from "../../common/protocol.js";
import { GrpcWorkerClient, WorkerRpcError } from "../../coordinator/transport/grpc_client.js";
import { WorkerEngine } from "../../worker/engine.js";
import { serveWorker, type WorkerServerHandle } from "../../worker/grpc_server.js";
import { fingerprintFile } from "../../worker/model/load_weights.js";
import { REFERENCE_DIR } from "../helpers/reference_compare.js";
import { randomArray } from "../helpers/tiny_vit.js";
import { rejection, TOKEN } from "./grpc_helpers.js";

const D = 48;
const depth = 3;
const r = 4;
const weights = path.join(REFERENCE_DIR, "tiny_vit.safetensors");

let server: WorkerServerHandle;
let remote: GrpcWorkerClient;
const served = new WorkerEngine({ name: "served" });
const direct = new WorkerEngine({ name: "direct" });
let setup: SetupRequest;

const B = Array.from({ length: depth }, (_, i) => randomArray(r * D, i, 0.1));
const finished = [
  {
    task: 0,
    rank: r,
    Bk: B,
    Bv: B,
    Ak: B.map((_, i) => randomArray(D * r, 10 + i, 0.1)),
    Av: B.map((_, i) => randomArray(D * r, 20 + i, 0.1)),
  },
];
const heads = [
  { classes: 4, weight: randomArray(4 * D, 30, 0.1), bias: randomArray(4, 31, 0.1) },
  { classes: 3, weight: randomArray(3 * D, 32, 0.1), bias: randomArray(3, 33, 0.1) },
];
const params: TrainParams = {
  version: 1,
  Ak: B.map((_, i) => randomArray(D * r, 100 + i, 0.01)),
  Av: B.map((_, i) => randomArray(D * r, 150 + i, 0.01)),
  head: { classes: 3, weight: randomArray(3 * D, 7, 0.1), bias: randomArray(3, 8, 0.1) },
};
const trainShards: MicroShard[] = [
  {
    index: 0,
    split: "train",
    samples: Int32Array.from([0, 1]),
    targets: Int32Array.from([0, 2]),
    augment: { seed: 5, task: 1, epoch: 0 },
  },
  {
    index: 1,
    split: "train",
    samples: Int32Array.from([3, 4, 5]),
    targets: Int32Array.from([2, 1, 0]),
    augment: { seed: 5, task: 1, epoch: 0 },
  },
];

function same(a: Float32Array, b: Float32Array): boolean {
  return (
    a.length === b.length &&
    Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
      Buffer.from(b.buffer, b.byteOffset, b.byteLength),
    )
  );
}

beforeAll(async () => {
  delete process.env.INFLORA_TOKEN;
  server = await serveWorker({ worker: served, listen: "127.0.0.1:0", security: { token: TOKEN } });
  remote = new GrpcWorkerClient({ address: server.address, security: { token: TOKEN }, deadlineMs: 60_000 });
  setup = {
    runId: "grpc-engine-test",
    protocolVersion: PROTOCOL_VERSION,
    weightsPath: weights,
    weightsFingerprint: await fingerprintFile(weights),
    model: { imgSize: 32, patchSize: 4, inChans: 3, embedDim: D, depth, numHeads: 3, mlpHidden: 192 },
    data: { dataset: "cifar100", dataPath: path.join(REFERENCE_DIR, "cifar_bin"), imageSize: 32, threads: 0 },
  };
});

afterAll(async () => {
  await remote?.close();
  await server?.close();
  await direct.close();
});

describe("WorkerEngine over gRPC", () => {
  it("answers setup like the in-process engine", async () => {
    // One after the other: two engines initialising the process-wide tfjs backend at once race.
    const a = await remote.setup(setup);
    const b = await direct.setup(setup);
    expect(a.workerId).toBe(served.workerId);
    // The one transport-level field: this server has no NATS parameter feed.
    const { transport, ...rest } = a;
    expect(transport).toEqual({ params_over_nats: false });
    expect({ ...rest, workerId: "" }).toEqual({ ...b, workerId: "" });
  });

  it("gives bit-identical training steps, with full parameters and by version", async () => {
    const state: TaskState = { version: 1, task: 1, finished, currentB: { rank: r, B }, heads: [] };
    await Promise.all([remote.setTaskState(state), direct.setTaskState(state)]);
    for (const p of [params, { version: params.version }]) {
      const req = { stateVersion: 1, params: p, shards: trainShards };
      const got = await remote.trainStep(req);
      const want = await direct.trainStep(req);
      expect(got.map((x) => x.index)).toEqual([0, 1]);
      for (const [k, w] of want.entries()) {
        const g = got[k];
        expect({ count: g.count, lossSum: g.lossSum, correct: g.correct }).toEqual({
          count: w.count,
          lossSum: w.lossSum,
          correct: w.correct,
        });
        for (let i = 0; i < depth; i++) {
          expect(same(g.gradAk[i], w.gradAk[i]), `gradAk[${i}]`).toBe(true);
          expect(same(g.gradAv[i], w.gradAv[i]), `gradAv[${i}]`).toBe(true);
        }
        expect(same(g.gradHeadW, w.gradHeadW) && same(g.gradHeadB, w.gradHeadB)).toBe(true);
      }
    }
  });

  it("gives bit-identical covariance sums and evaluation logits", async () => {
    const state: TaskState = { version: 2, task: 1, finished, heads };
    await Promise.all([remote.setTaskState(state), direct.setTaskState(state)]);
    const covReq = {
      stateVersion: 2,
      shards: trainShards.map(({ targets: _, ...s }) => ({ ...s, augment: { seed: 5, task: 1, epoch: -1 } })),
    };
    const [got, want] = [await remote.covariance(covReq), await direct.covariance(covReq)];
    expect(got.map((x) => [x.index, x.tokens])).toEqual(want.map((x) => [x.index, x.tokens]));
    for (const [k, w] of want.entries()) {
      for (let i = 0; i < depth; i++)
        expect(same(got[k].sums[i], w.sums[i]), `shard ${k} block ${i}`).toBe(true);
    }
    const evalReq = {
      stateVersion: 2,
      shards: [
        { index: 0, split: "test" as const, samples: Int32Array.from([0, 1, 2, 3, 4]) },
        { index: 1, split: "test" as const, samples: Int32Array.from([9]) },
      ],
    };
    const [e1, e2] = [await remote.evaluate(evalReq), await direct.evaluate(evalReq)];
    expect(e1.map((x) => x.logits.length)).toEqual([5 * 7, 7]);
    for (const [k, w] of e2.entries()) expect(same(e1[k].logits, w.logits)).toBe(true);
  });

  it("turns a missing state or parameter version into StaleVersionError, and keeps serving", async () => {
    const stale = await rejection(
      remote.covariance({
        stateVersion: 99,
        shards: [{ index: 0, split: "train", samples: Int32Array.of(1) }],
      }),
    );
    expect(stale).toBeInstanceOf(StaleVersionError);
    expect(stale).toMatchObject({ what: "state", wanted: 99 });
    // State 1 is still held (the engine keeps two); parameters 77 never were.
    const params77 = await rejection(
      remote.trainStep({ stateVersion: 1, params: { version: 77 }, shards: trainShards }),
    );
    expect(params77).toBeInstanceOf(StaleVersionError);
    expect(params77).toMatchObject({ what: "params", wanted: 77 });
    const again = await remote.trainStep({
      stateVersion: 1,
      params: { ...params, version: 77 },
      shards: trainShards,
    });
    expect(again).toHaveLength(2);
  });

  it("refuses another protocol version, other base weights and other runs' requests with FAILED_PRECONDITION", async () => {
    const protocol = await rejection(remote.setup({ ...setup, protocolVersion: PROTOCOL_VERSION + 1 }));
    expect(protocol).toBeInstanceOf(WorkerRpcError);
    expect(protocol).toMatchObject({ code: status.FAILED_PRECONDITION, reason: "protocol-version" });
    expect(protocol.message).toContain(`this worker speaks ${PROTOCOL_VERSION}`);

    // A second coordinator takes the worker over: the first one's requests are refused from then on.
    const other = new GrpcWorkerClient({
      address: server.address,
      security: { token: TOKEN },
      releaseOnClose: false,
    });
    await other.setup({ ...setup, runId: "another-run" });
    const wrongRun = await rejection(
      remote.evaluate({ stateVersion: 2, shards: [{ index: 0, split: "test", samples: Int32Array.of(0) }] }),
    );
    expect(wrongRun).toMatchObject({ code: status.FAILED_PRECONDITION, reason: "wrong-run" });
    expect(wrongRun.message).toContain('set up for run "another-run"');

    const fingerprint = await rejection(other.setup({ ...setup, weightsFingerprint: "0".repeat(64) }));
    expect(fingerprint).toMatchObject({ code: status.FAILED_PRECONDITION, reason: "setup-refused" });
    expect(fingerprint.message).toContain("base weights differ");
    // A failed setup leaves the worker empty: compute calls now ask for the handshake again.
    const notSetUp = await rejection(
      other.covariance({
        stateVersion: 1,
        shards: [{ index: 0, split: "train", samples: Int32Array.of(0) }],
      }),
    );
    expect(notSetUp).toMatchObject({ code: status.FAILED_PRECONDITION, reason: "not-set-up" });
    await other.close();
  });
});
