/**
 * Malformed traffic either way, on real gRPC. Requests with a wrong shape, dtype, byte length, NaN
 * parameters, mismatched targets or incomplete streams are refused with INVALID_ARGUMENT naming the field,
 * never reach the worker, and the server keeps serving. Replies with NaN, wrong counts, unrequested shards,
 * repeated or missing parts are refused by the client with MalformedReplyError naming worker and field.
 */
import type { EventEmitter } from "node:events";
import {
  credentials,
  type Metadata,
  Server,
  ServerCredentials,
  type ServerDuplexStream,
  type ServerWritableStream,
  type ServiceError,
  status,
} from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type MicroShard, PROTOCOL_VERSION, type TrainParams } from "../../common/protocol.js";
import { Dtype, encodeTensor, type Tensor } from "../../common/tensor_codec.js";
import { GrpcWorkerClient, MalformedReplyError } from "../../coordinator/transport/grpc_client.js";
import { setupToPb } from "../../coordinator/transport/grpc_messages.js";
import * as pb from "../../proto/gen/inflora/v1/compute.js";
import type { FinalNorm as PbFinalNorm } from "../../proto/gen/inflora/v1/setup.js";
import type { SetTaskStateRequest } from "../../proto/gen/inflora/v1/state.js";
import {
  WorkerClient as PbWorkerClient,
  type WorkerServer,
  WorkerService,
} from "../../proto/gen/inflora/v1/worker.js";
import { serveWorker, type WorkerServerHandle } from "../../worker/grpc_server.js";
import { FakeWorker, healthCheck, rejection, setupRequest, TOKEN, tokenMetadata } from "./grpc_helpers.js";

const D = 8;
const depth = 2;
const r = 2;
const RUN = "run-1";
const worker = new FakeWorker();
let server: WorkerServerHandle;
let client: GrpcWorkerClient;
let raw: PbWorkerClient;

beforeAll(async () => {
  delete process.env.INFLORA_TOKEN;
  server = await serveWorker({ worker, listen: "127.0.0.1:0", security: { token: TOKEN } });
  client = new GrpcWorkerClient({
    address: server.address,
    name: "worker-a",
    security: { token: TOKEN },
    deadlineMs: 10_000,
  });
  await client.setup(setupRequest(D, depth, RUN));
  raw = new PbWorkerClient(server.address, credentials.createInsecure());
});

afterAll(async () => {
  raw?.close();
  await client?.close();
  await server?.close();
});

const f32 = (n: number, fill = 0.5) => new Float32Array(n).fill(fill);
const i32 = (...v: number[]) => encodeTensor(Int32Array.from(v), [v.length]);

function shard(overrides: Partial<pb.MicroShard> = {}): pb.MicroShard {
  return {
    index: 0,
    split: pb.Split.SPLIT_TRAIN,
    samples: i32(1, 2, 3),
    targets: i32(0, 1, 2),
    augment: undefined,
    ...overrides,
  };
}

function md(): Metadata {
  return tokenMetadata();
}

/** The status of a raw server-streaming call (which must fail). */
function streamStatus(call: EventEmitter): Promise<ServiceError> {
  return new Promise((resolve, reject) => {
    call.on("error", (err: ServiceError) => resolve(err));
    call.on("end", () => reject(new Error("the call succeeded")));
    call.on("data", () => undefined);
  });
}

function rawCovariance(shards: pb.MicroShard[], stateVersion = 1): Promise<ServiceError> {
  return streamStatus(raw.covariance({ runId: RUN, stateVersion, shards, microBatch: 0 }, md()));
}

function rawTrain(parts: pb.TrainStepRequest[]): Promise<ServiceError> {
  const call = raw.trainStep(md());
  const done = streamStatus(call);
  for (const p of parts) call.write(p);
  call.end();
  return done;
}

function rawState(parts: SetTaskStateRequest[]): Promise<ServiceError> {
  return new Promise((resolve, reject) => {
    const call = raw.setTaskState(md(), {}, (err) =>
      err ? resolve(err) : reject(new Error("the call succeeded")),
    );
    for (const p of parts) call.write(p);
    call.end();
  });
}

const header = (h: Partial<pb.TrainStepHeader> = {}): pb.TrainStepRequest => ({
  part: {
    $case: "header",
    value: {
      runId: RUN,
      stateVersion: 1,
      paramsVersion: 1,
      fullParams: true,
      shards: [shard()],
      paramsSha256: new Uint8Array(0),
      ...h,
    },
  },
});
const block = (b: number, ak: Tensor = encodeTensor(f32(D * r), [D, r])): pb.TrainStepRequest => ({
  part: { $case: "params", value: { block: b, aK: ak, aV: encodeTensor(f32(D * r), [D, r]) } },
});
const head = (bias = f32(3)): pb.TrainStepRequest => ({
  part: {
    $case: "head",
    value: { index: 0, weight: encodeTensor(f32(3 * D), [3, D]), bias: encodeTensor(bias, [3]) },
  },
});

async function expectInvalid(p: Promise<ServiceError>, details: string): Promise<void> {
  const err = await p;
  expect(err.code, err.details).toBe(status.INVALID_ARGUMENT);
  expect(err.details).toBe(`invalid request: ${details}`);
}

function rawEvaluate(output: pb.EvalOutput): Promise<ServiceError> {
  const shards = [shard({ split: pb.Split.SPLIT_TEST, targets: undefined })];
  return streamStatus(raw.evaluate({ runId: RUN, stateVersion: 1, shards, output }, md()));
}

describe("malformed requests", () => {
  it("refuses an evaluation output it does not know, naming the field", async () => {
    await expectInvalid(rawEvaluate(7 as pb.EvalOutput), "output: unknown evaluation output 7");
  });

  it("refuses bad shards: dtype, byte length, shape, split, repeated index, negative versions", async () => {
    await expectInvalid(
      rawCovariance([shard({ samples: encodeTensor(f32(3), [3]) })]),
      "shards[0].samples: dtype float32, expected int32",
    );
    const short: Tensor = { dtype: Dtype.DTYPE_I32, shape: [3], data: new Uint8Array(10) };
    await expectInvalid(
      rawCovariance([shard({ samples: short })]),
      "shards[0].samples: 10 bytes, but shape [3] of int32 needs 12",
    );
    await expectInvalid(
      rawCovariance([shard({ samples: encodeTensor(Int32Array.from([1, 2, 3]), [1, 3]) })]),
      "shards[0].samples: shape [1, 3], expected [*]",
    );
    await expectInvalid(rawCovariance([shard({ samples: i32() })]), "shards[0].samples: is empty");
    await expectInvalid(rawCovariance([shard({ samples: i32(4, -1) })]), "shards[0].samples[1]: is -1");
    await expectInvalid(
      rawCovariance([shard({ split: pb.Split.SPLIT_UNSPECIFIED })]),
      "shards[0].split: unknown split 0",
    );
    await expectInvalid(rawCovariance([shard(), shard()]), "shards[1].index: shard 0 appears twice");
    await expectInvalid(
      rawCovariance([shard()], -3),
      "state_version: must be a non-negative integer, got -3",
    );
  });

  it("refuses bad training steps: NaN parameters, wrong shapes, mismatched targets, missing parts", async () => {
    const nan = f32(D * r);
    nan[5] = Number.NaN;
    await expectInvalid(
      rawTrain([header(), block(0, encodeTensor(nan, [D, r])), block(1), head()]),
      "params[block 0].a_k: element 5 is NaN",
    );
    await expectInvalid(
      rawTrain([header(), block(0, encodeTensor(f32((D + 1) * r), [D + 1, r])), block(1), head()]),
      "params[block 0].a_k: shape [9, 2], expected [8, *]",
    );
    await expectInvalid(
      rawTrain([header(), block(0), block(1, encodeTensor(f32(D * 3), [D, 3])), head()]),
      "params[block 1].a_k: shape [8, 3], expected [8, 2]",
    );
    await expectInvalid(
      rawTrain([header(), block(0), block(1), head(Float32Array.from([0, Number.POSITIVE_INFINITY, 0]))]),
      "head.bias: element 1 is Infinity",
    );
    await expectInvalid(rawTrain([header(), block(0), head()]), "params: blocks 1 never arrived");
    await expectInvalid(rawTrain([header(), block(0), block(0)]), "message 2.params: block 0 sent twice");
    await expectInvalid(rawTrain([header(), block(5)]), "message 1.params.block: block 5 outside [0, 2)");
    await expectInvalid(
      rawTrain([header({ shards: [shard({ targets: i32(0, 1) })] }), block(0), block(1), head()]),
      "header.shards[0].targets: shape [2], expected [3]",
    );
    await expectInvalid(
      rawTrain([header({ shards: [shard({ targets: i32(0, 5, 1) })] }), block(0), block(1), head()]),
      "header.shards[0].targets[1]: is 5, outside [0, 3)",
    );
    await expectInvalid(
      rawTrain([header({ shards: [shard({ targets: undefined })] }), block(0), block(1), head()]),
      "header.shards[0].targets: missing: a training shard needs one target per sample",
    );
    await expectInvalid(rawTrain([block(0)]), "message 0: the first message must be the header");
    await expectInvalid(
      rawTrain([header({ fullParams: false }), block(0)]),
      "message 1: parameters sent, but the header says full_params = false",
    );
  });

  it("refuses incomplete or inconsistent task state streams", async () => {
    const stateHeader = (heads: number): SetTaskStateRequest => ({
      part: {
        $case: "header",
        value: { runId: RUN, version: 3, task: 1, finished: [{ task: 0, rank: r }], heads },
      },
    });
    const adapter = (b: number, bK = encodeTensor(f32(r * D), [r, D])): SetTaskStateRequest => ({
      part: {
        $case: "adapter",
        value: {
          finished: 0,
          block: b,
          bK,
          bV: encodeTensor(f32(r * D), [r, D]),
          aK: encodeTensor(f32(D * r), [D, r]),
          aV: encodeTensor(f32(D * r), [D, r]),
        },
      },
    });
    await expectInvalid(
      rawState([stateHeader(0), adapter(0)]),
      "adapter[finished 0]: blocks 1 never arrived",
    );
    await expectInvalid(
      rawState([stateHeader(0), adapter(0, encodeTensor(f32(D * r), [D, r])), adapter(1)]),
      "adapter[finished 0, block 0].b_k: shape [8, 2], expected [2, 8]",
    );
    await expectInvalid(
      rawState([
        stateHeader(1),
        adapter(0),
        adapter(1),
        {
          part: {
            $case: "head",
            value: {
              index: 0,
              weight: encodeTensor(f32(2 * D, Number.NaN), [2, D]),
              bias: encodeTensor(f32(2), [2]),
            },
          },
        },
      ]),
      "head[0].weight: element 0 is NaN",
    );
    await expectInvalid(rawState([stateHeader(1), adapter(0), adapter(1)]), "head: heads 0 never arrived");
    await expectInvalid(
      rawState([
        stateHeader(0),
        { part: { $case: "currentB", value: { block: 0, b: encodeTensor(f32(r * D), [r, D]) } } },
      ]),
      "message 1.current_b: the header announced no current B",
    );
    await expectInvalid(rawState([adapter(0)]), "message 0: the first message must be the header");
  });

  it("refuses bytes that are not protobuf for the message (INVALID_ARGUMENT, not INTERNAL)", async () => {
    // Field 2 (state_version, int64) as a varint of 2^63−1: beyond 2^53, which the decoder refuses.
    const garbage = Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    const err = await new Promise<ServiceError>((resolve, reject) => {
      const call = raw.makeServerStreamRequest(
        "/inflora.v1.Worker/Covariance",
        () => garbage,
        (b: Buffer) => b,
        {},
        md(),
        {},
      );
      call.on("data", () => undefined);
      call.on("error", (e: ServiceError) => resolve(e));
      call.on("end", () => reject(new Error("the call succeeded")));
    });
    expect(err.code).toBe(status.INVALID_ARGUMENT);
    expect(err.details).toMatch(/^invalid request: request: cannot be decoded: /);
    const truncated = await new Promise<ServiceError>((resolve, reject) => {
      const call = raw.makeClientStreamRequest(
        "/inflora.v1.Worker/SetTaskState",
        () => Buffer.from([0x0a, 0x40, 0x01]),
        (b: Buffer) => b,
        md(),
        {},
        (e) => (e ? resolve(e) : reject(new Error("the call succeeded"))),
      );
      call.write({});
      call.end();
    });
    expect(truncated.code).toBe(status.INVALID_ARGUMENT);
    expect(truncated.details).toMatch(/^invalid request: message 0: cannot be decoded: /);
  });

  it("never let bad requests reach the worker, and keeps serving", async () => {
    expect(worker.calls).toEqual(["setup"]);
    worker.covarianceReply = (req) =>
      req.shards.map((s) => ({
        index: s.index,
        tokens: 17 * s.samples.length,
        sums: [f32(D * D, 1), f32(D * D, 2)],
      }));
    const ok = await client.covariance({
      stateVersion: 1,
      shards: [{ index: 4, split: "train", samples: Int32Array.of(1) }],
    });
    expect(ok[0]).toMatchObject({ index: 4, tokens: 17 });
    expect(await healthCheck(server.address, "")).toBe("SERVING");
  });
});

describe("malformed replies (through the real server)", () => {
  const shards: MicroShard[] = [
    { index: 0, split: "train", samples: Int32Array.from([1, 2]), targets: Int32Array.from([0, 1]) },
    { index: 1, split: "train", samples: Int32Array.from([3]), targets: Int32Array.from([2]) },
  ];
  const params: TrainParams = {
    version: 9,
    Ak: [f32(D * r), f32(D * r)],
    Av: [f32(D * r), f32(D * r)],
    head: { classes: 3, weight: f32(3 * D), bias: f32(3) },
  };
  const grads = (index: number, count: number) => ({
    index,
    count,
    lossSum: 1.5,
    correct: 0,
    gradAk: [f32(D * r), f32(D * r)],
    gradAv: [f32(D * r), f32(D * r)],
    gradHeadW: f32(3 * D),
    gradHeadB: f32(3),
  });

  it("refuses NaN covariance sums, naming worker and field", async () => {
    worker.covarianceReply = (req) =>
      req.shards.map((s) => ({
        index: s.index,
        tokens: 18,
        sums: [f32(D * D), Float32Array.from({ length: D * D }, (_, k) => (k === 9 ? Number.NaN : 0))],
      }));
    const err = await rejection(client.covariance({ stateVersion: 1, shards: [shards[0]] }));
    expect(err).toBeInstanceOf(MalformedReplyError);
    expect(err).toMatchObject({ worker: "worker-a", method: "covariance", field: "shard 0.sums[1].rows" });
    expect(err.message).toBe(
      "worker worker-a: malformed covariance reply: shard 0.sums[1].rows: element 9 is NaN",
    );
  });

  it("refuses token counts that cannot belong to the shard", async () => {
    worker.covarianceReply = (req) =>
      req.shards.map((s) => ({ index: s.index, tokens: 3, sums: [f32(D * D), f32(D * D)] }));
    const err = await rejection(client.covariance({ stateVersion: 1, shards: [shards[0]] }));
    expect(err.message).toContain("shard 0.tokens: 3 is not a positive multiple of the 2 samples");
  });

  it("refuses wrong counts, gradient shapes and non-finite gradients", async () => {
    worker.trainReply = () => [grads(0, 2), grads(1, 5)];
    let err = await rejection(client.trainStep({ stateVersion: 1, params, shards }));
    expect(err).toBeInstanceOf(MalformedReplyError);
    expect(err.message).toContain("shard 1.count: 5 for 1 samples");
    worker.trainReply = () => [grads(0, 2), { ...grads(1, 1), gradAv: [f32(D * r), f32(D * (r + 1))] }];
    err = await rejection(client.trainStep({ stateVersion: 1, params, shards }));
    // 2·depth·D·r + classes·(D + 1) = 64 + 27 elements; A_v[1] one column wider makes 99.
    expect(err.message).toContain("shard 1.grads: elements [0, 99) overrun the 91 of rank 2 and 3 classes");
    worker.trainReply = () => [
      grads(0, 2),
      { ...grads(1, 1), gradHeadB: Float32Array.from([0, Number.NEGATIVE_INFINITY, 0]) },
    ];
    err = await rejection(client.trainStep({ stateVersion: 1, params, shards }));
    expect(err.message).toContain("shard 1.grad_head_b: element 1 is -Infinity");
    worker.trainReply = () => [grads(0, 2), { ...grads(1, 1), lossSum: Number.NaN }];
    err = await rejection(client.trainStep({ stateVersion: 1, params, shards }));
    expect(err.message).toContain("shard 1.loss_sum: is NaN");
    worker.trainReply = () => [grads(0, 2)];
    err = await rejection(client.trainStep({ stateVersion: 1, params, shards }));
    expect(err.message).toContain("shard_index: shards 1 were not answered");
    // The sender is quarantined by the coordinator; the channel itself is fine.
    worker.trainReply = () => [grads(0, 2), grads(1, 1)];
    expect(await client.trainStep({ stateVersion: 1, params: { version: 9 }, shards })).toHaveLength(2);
  });

  it("refuses evaluation logits whose width differs from the heads of the state", async () => {
    await client.setTaskState({
      version: 5,
      task: 1,
      finished: [],
      heads: [
        { classes: 3, weight: f32(3 * D), bias: f32(3) },
        { classes: 2, weight: f32(2 * D), bias: f32(2) },
      ],
    });
    worker.evalReply = (req) =>
      req.shards.map((s) => ({ index: s.index, logits: f32(s.samples.length * 4) }));
    const err = await rejection(
      client.evaluate({
        stateVersion: 5,
        shards: [{ index: 0, split: "test", samples: Int32Array.of(1, 2) }],
      }),
    );
    expect(err.message).toContain("shard 0.logits: shape [2, 4], expected [*, 5]");
    worker.evalReply = (req) =>
      req.shards.map((s) => ({ index: s.index, logits: f32(s.samples.length * 5) }));
    const ok = await client.evaluate({
      stateVersion: 5,
      shards: [{ index: 0, split: "test", samples: Int32Array.of(1, 2) }],
    });
    expect(ok[0].logits).toHaveLength(10);
  });

  it("expects features D wide when the request asks for features, whatever the heads", async () => {
    const samples = Int32Array.of(1, 2);
    worker.evalReply = (req) =>
      req.shards.map((s) => ({ index: s.index, logits: f32(s.samples.length * 5) }));
    const err = await rejection(
      client.evaluate({
        stateVersion: 5,
        shards: [{ index: 0, split: "train", samples }],
        output: "features",
      }),
    );
    expect(err.message).toContain(`shard 0.logits: shape [2, 5], expected [*, ${D}]`);
    let asked: string | undefined;
    worker.evalReply = (req) => {
      asked = req.output;
      return req.shards.map((s) => ({ index: s.index, logits: f32(s.samples.length * D) }));
    };
    const ok = await client.evaluate({
      stateVersion: 5,
      shards: [{ index: 0, split: "train", samples }],
      output: "features",
    });
    expect(ok[0].logits).toHaveLength(2 * D);
    expect(asked).toBe("features");
  });
});

describe("malformed replies (from a rogue server)", () => {
  let rogue: Server;
  let rogueClient: GrpcWorkerClient;
  let script: pb.CovarianceResponse[] = [];
  let trainScript: pb.TrainStepResponse[] = [];

  beforeAll(async () => {
    rogue = new Server();
    const unimplemented = (_call: unknown, cb: (err: Partial<ServiceError>) => void) =>
      cb({ code: status.UNIMPLEMENTED });
    const handlers: WorkerServer = {
      setup: (call, cb) =>
        cb(null, {
          workerId: "rogue",
          protocolVersion: PROTOCOL_VERSION,
          weightsFingerprint: call.request.weightsFingerprint,
          backend: "x",
          device: "x",
          adapter: undefined,
          paramsSubscribed: false,
        }),
      setTaskState: unimplemented,
      trainStep: (call: ServerDuplexStream<pb.TrainStepRequest, pb.TrainStepResponse>) => {
        call.on("data", () => {});
        call.on("end", () => {
          for (const m of trainScript) call.write(m);
          call.end();
        });
      },
      evaluate: (call) => call.emit("error", { code: status.UNIMPLEMENTED }),
      release: (_call, cb) => cb(null, {}),
      covariance: (call: ServerWritableStream<pb.CovarianceRequest, pb.CovarianceResponse>) => {
        for (const m of script) call.write(m);
        call.end();
      },
    };
    rogue.addService(WorkerService, handlers);
    const port = await new Promise<number>((resolve, reject) =>
      rogue.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    rogueClient = new GrpcWorkerClient({
      address: `127.0.0.1:${port}`,
      name: "rogue",
      releaseOnClose: false,
    });
    await rogueClient.setup(setupRequest(D, depth, RUN));
  });

  afterAll(async () => {
    await rogueClient?.close();
    rogue?.forceShutdown();
  });

  const rows = (block: number, rowOffset: number, n: number, shardIndex = 0): pb.CovarianceResponse => ({
    shardIndex,
    tokens: 10,
    block,
    rowOffset,
    rows: encodeTensor(f32(n * D), [n, D]),
  });
  const complete = (shardIndex = 0) => [
    rows(0, 0, D, shardIndex),
    rows(1, 0, 4, shardIndex),
    rows(1, 4, 4, shardIndex),
  ];
  const request = {
    stateVersion: 1,
    shards: [{ index: 0, split: "train" as const, samples: Int32Array.of(1, 2) }],
  };

  it("accepts a complete reply sliced by rows", async () => {
    script = complete();
    const [res] = await rogueClient.covariance(request);
    expect(res.sums.map((s) => s.length)).toEqual([D * D, D * D]);
  });

  it.each([
    ["an unrequested shard", () => [...complete(), ...complete(3)], "shard_index: shard 3 was not requested"],
    ["a repeated row", () => [...complete(), rows(1, 3, 1)], "shard 0.sums[1].rows: row 3 arrived twice"],
    ["rows past the end", () => [rows(0, 6, 4)], "shard 0.sums[0].rows: rows 6…9 exceed the 8 rows"],
    ["a missing block", () => [rows(0, 0, D)], "shard 0.sums[1]: rows missing"],
    ["a block beyond the model", () => [rows(2, 0, D)], "shard 0.block: 2 outside [0, 2)"],
    ["no answer at all", () => [], "shard_index: shards 0 were not answered"],
    [
      "changing token counts",
      () => [rows(0, 0, D), { ...rows(1, 0, D), tokens: 12 }],
      "shard 0.tokens: 12, but earlier slices said 10",
    ],
    [
      "a wrong dtype",
      () => [{ ...rows(0, 0, D), rows: encodeTensor(new Float64Array(D * D), [D, D]) }],
      "shard 0.sums[0].rows: dtype float64, expected float32",
    ],
  ])("refuses %s", async (_what, make, message) => {
    script = make();
    const err = await rejection(rogueClient.covariance(request));
    expect(err).toBeInstanceOf(MalformedReplyError);
    expect(err.message).toBe(`worker rogue: malformed covariance reply: ${message}`);
  });

  // Training replies: per shard a summary and one flat vector of 2·depth·D·r + classes·(D + 1) = 91
  // elements (r = 2, 3 classes), whole or in ordered slices.
  const total = 2 * depth * D * r + 3 * (D + 1);
  const vector = Float32Array.from({ length: total }, (_, i) => i / 8);
  const summary = { count: 2, lossSum: 1.5, correct: 1, rank: r, classes: 3 };
  const slice = (from: number, to: number, first = from === 0, shardIndex = 0): pb.TrainStepResponse => ({
    shardIndex,
    summary: first ? summary : undefined,
    offset: from,
    grads: encodeTensor(vector.slice(from, to), [to - from]),
    align: new Uint8Array(0),
  });
  const trainRequest = {
    stateVersion: 1,
    params: {
      version: 4,
      Ak: [f32(D * r), f32(D * r)],
      Av: [f32(D * r), f32(D * r)],
      head: { classes: 3, weight: f32(3 * D), bias: f32(3) },
    },
    shards: [
      { index: 0, split: "train" as const, samples: Int32Array.of(1, 2), targets: Int32Array.of(0, 1) },
    ],
  };

  it("reassembles a gradient vector sent in slices, every tensor in its place", async () => {
    trainScript = [slice(0, 10), slice(10, 64), slice(64, total)];
    const [res] = await rogueClient.trainStep(trainRequest);
    expect(res).toMatchObject({ index: 0, count: 2, lossSum: 1.5, correct: 1 });
    expect(res.gradAk[1]).toEqual(vector.slice(D * r, 2 * D * r));
    expect(res.gradAv[0]).toEqual(vector.slice(2 * D * r, 3 * D * r));
    expect(res.gradHeadW).toEqual(vector.slice(64, 64 + 3 * D));
    expect(res.gradHeadB).toEqual(vector.slice(64 + 3 * D));
  });

  it.each([
    [
      "slices out of order",
      () => [slice(0, 10), slice(20, total, false)],
      "shard 0.grads: a slice at element 20, expected 10 (slices come in order)",
    ],
    [
      "gradients before the summary",
      () => [slice(0, total, false)],
      "shard 0.summary: gradients arrived before the summary",
    ],
    ["a second summary", () => [slice(0, 10), slice(10, total, true)], "shard 0.summary: sent twice"],
    ["a missing slice", () => [slice(0, 64)], "shard 0.grads: 64 of 91 elements arrived"],
    [
      "a rank other than the parameters'",
      () => [{ ...slice(0, total), summary: { ...summary, rank: 3 } }],
      "shard 0.rank: 3, expected 2 (the parameters')",
    ],
    [
      "a NaN in a head bias",
      () => [
        {
          ...slice(0, total),
          grads: encodeTensor(
            Float32Array.from(vector, (v, i) => (i === total - 2 ? Number.NaN : v)),
            [total],
          ),
        },
      ],
      "shard 0.grad_head_b: element 1 is NaN",
    ],
    [
      "an infinite A_v element in a later slice",
      () => [
        slice(0, 40),
        {
          ...slice(40, total),
          grads: encodeTensor(
            Float32Array.from(vector.slice(40), (v, i) => (i === 5 ? Number.POSITIVE_INFINITY : v)),
            [total - 40],
          ),
        },
      ],
      "shard 0.grad_Av[0]: element 13 is Infinity",
    ],
  ])("refuses %s", async (_what, make, message) => {
    trainScript = make();
    const err = await rejection(rogueClient.trainStep(trainRequest));
    expect(err).toBeInstanceOf(MalformedReplyError);
    expect(err.message).toBe(`worker rogue: malformed trainStep reply: ${message}`);
  });
});

describe("the model's final norm in the handshake", () => {
  it("carries a fresh final norm to the worker and refuses one it does not know, naming the field", async () => {
    const base = setupRequest(D, depth, RUN);
    await client.setup({ ...base, model: { ...base.model, finalNorm: "fresh" } });
    expect(worker.setupRequests.at(-1)?.model.finalNorm).toBe("fresh");
    await client.setup(base);
    expect(worker.setupRequests.at(-1)?.model.finalNorm).toBeUndefined();
    const pbSetup = setupToPb(base);
    const err = await new Promise<ServiceError>((resolve, reject) =>
      raw.setup({ ...pbSetup, model: { ...pbSetup.model!, finalNorm: 7 as PbFinalNorm } }, md(), (e) =>
        e ? resolve(e) : reject(new Error("the call succeeded")),
      ),
    );
    expect(err.code, err.details).toBe(status.INVALID_ARGUMENT);
    expect(err.details).toBe("invalid request: model.final_norm: unknown final norm 7");
  });
});
