/**
 * The worker server's limits (issue #15, item 5), on real gRPC: a message past the size limit is refused
 * with RESOURCE_EXHAUSTED naming both sizes and the server keeps serving; calls past the in-flight limit are
 * refused at once with RESOURCE_EXHAUSTED naming the limit, while the admitted ones finish, callers without
 * the token take no place, and health checks still answer; the HTTP/2 stream limit is announced. The size
 * limit holds the largest message a ViT-B/16 run sends either way.
 */
import http2 from "node:http2";
import { Client, credentials, type ServiceError, status } from "@grpc/grpc-js";
import { afterAll, describe, expect, it } from "vitest";
import { MAX_MESSAGE_BYTES, messageLimits } from "../../common/grpc_wire.js";
import type { CovarianceRequest, CovarianceResult, TaskState } from "../../common/protocol.js";
import { encodeTensor } from "../../common/tensor_codec.js";
import { GrpcWorkerClient, WorkerRpcError } from "../../coordinator/transport/grpc_client.js";
import { taskStateParts, trainStepParts } from "../../coordinator/transport/grpc_messages.js";
import * as pb from "../../proto/gen/inflora/v1/compute.js";
import { SetTaskStateRequest } from "../../proto/gen/inflora/v1/state.js";
import { DEFAULT_MAX_CALLS_IN_FLIGHT } from "../../worker/call_limit.js";
import { serveWorker, type WorkerServerHandle } from "../../worker/grpc_server.js";
import { covarianceMessages, serializeTrainStepResponse, trainMessages } from "../../worker/grpc_service.js";
import { recordFault } from "../helpers/fault_table.js";
import { FakeWorker, healthCheck, rejection, setupRequest, TOKEN, tokenMetadata } from "./grpc_helpers.js";

const D = 8;
const depth = 2;
const servers: WorkerServerHandle[] = [];
const clients: GrpcWorkerClient[] = [];

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(servers.map((s) => s.close()));
});

/** A FakeWorker whose covariance waits until the test opens the gate. */
class GatedWorker extends FakeWorker {
  private open!: () => void;
  gate = new Promise<void>((resolve) => {
    this.open = resolve;
  });
  release(): void {
    this.open();
  }
  override async covariance(req: CovarianceRequest): Promise<CovarianceResult[]> {
    await this.gate;
    return super.covariance(req);
  }
}

async function serve(worker: FakeWorker, options: { maxCallsInFlight?: number } = {}) {
  delete process.env.INFLORA_TOKEN;
  const server = await serveWorker({ worker, listen: "127.0.0.1:0", security: { token: TOKEN }, ...options });
  servers.push(server);
  const client = new GrpcWorkerClient({
    address: server.address,
    security: { token: TOKEN },
    deadlineMs: 20_000,
  });
  clients.push(client);
  await client.setup(setupRequest(D, depth));
  return { server, client };
}

const f32 = (n: number) => new Float32Array(n).fill(0.5);
const covRequest = {
  stateVersion: 1,
  shards: [{ index: 0, split: "train" as const, samples: Int32Array.of(1) }],
};
const covReply = (req: CovarianceRequest) =>
  req.shards.map((s) => ({ index: s.index, tokens: 3, sums: [f32(D * D), f32(D * D)] }));

describe("message-size limit", () => {
  it("refuses a message past the limit with RESOURCE_EXHAUSTED naming the sizes, and keeps serving", async () => {
    const worker = new FakeWorker();
    worker.covarianceReply = covReply;
    const { server, client } = await serve(worker);
    // One head part of 17 MiB: past the 16 MiB every message must fit in.
    const classes = Math.ceil((MAX_MESSAGE_BYTES + (1 << 20)) / (4 * D));
    const part = Buffer.from(
      SetTaskStateRequest.encode({
        part: {
          $case: "head",
          value: {
            index: 0,
            weight: encodeTensor(f32(classes * D), [classes, D]),
            bias: encodeTensor(f32(classes), [classes]),
          },
        },
      }).finish(),
    );
    const raw = new Client(
      server.address,
      credentials.createInsecure(),
      messageLimits(4 * MAX_MESSAGE_BYTES),
    );
    const started = performance.now();
    const err = await new Promise<ServiceError>((resolve, reject) => {
      const call = raw.makeClientStreamRequest(
        "/inflora.v1.Worker/SetTaskState",
        (b: Buffer) => b,
        (b: Buffer) => b,
        tokenMetadata(),
        {},
        (e) => (e ? resolve(e) : reject(new Error("the call succeeded"))),
      );
      call.write(part);
      call.end();
    });
    const ms = performance.now() - started;
    raw.close();
    expect(err.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(err.details).toBe(`Received message larger than max (${part.length} vs ${MAX_MESSAGE_BYTES})`);
    expect(worker.calls).toEqual(["setup"]);
    expect(await healthCheck(server.address, "")).toBe("SERVING");
    expect(await client.covariance(covRequest)).toHaveLength(1);
    recordFault({
      fault: `oversized message (${(part.length / 2 ** 20).toFixed(0)} MiB past the ${MAX_MESSAGE_BYTES / 2 ** 20} MiB limit)`,
      tried: 1,
      survived: 1,
      bitIdentical: null,
      detectionMs: Math.round(ms),
      detail: "RESOURCE_EXHAUSTED naming both sizes; the next call served",
    });
  });

  it("holds the largest message a ViT-B/16 run sends, either way", () => {
    const [Dv, depthV, rank] = [768, 12, 10];
    // DomainNet's 345 classes in one task is the widest head of the reference's configs.
    const head = { classes: 345, weight: f32(345 * Dv), bias: f32(345) };
    const block = () => f32(rank * Dv);
    const state: TaskState = {
      version: 1,
      task: 5,
      finished: Array.from({ length: 5 }, (_, t) => ({
        task: t,
        rank,
        Bk: Array.from({ length: depthV }, block),
        Bv: Array.from({ length: depthV }, block),
        Ak: Array.from({ length: depthV }, block),
        Av: Array.from({ length: depthV }, block),
      })),
      currentB: { rank, B: Array.from({ length: depthV }, block) },
      heads: Array.from({ length: 6 }, () => head),
    };
    const shards = [
      {
        index: 0,
        split: "train" as const,
        samples: Int32Array.from({ length: 512 }, (_, i) => i),
        targets: new Int32Array(512),
      },
    ];
    const params = {
      version: 3,
      Ak: Array.from({ length: depthV }, block),
      Av: Array.from({ length: depthV }, block),
      head,
    };
    const sizes = [
      ...[...taskStateParts(state, "run", Dv)].map((m) => SetTaskStateRequest.encode(m).finish().length),
      ...[...trainStepParts({ stateVersion: 1, params, shards }, "run", Dv)].map(
        (m) => pb.TrainStepRequest.encode(m).finish().length,
      ),
      ...[
        ...covarianceMessages(
          [{ index: 0, tokens: 512 * 197, sums: Array.from({ length: depthV }, () => f32(Dv * Dv)) }],
          { D: Dv, depth: depthV },
          1 << 20,
        ),
      ].map((m) => pb.CovarianceResponse.encode(m).finish().length),
      ...[
        ...trainMessages(
          [
            {
              index: 0,
              count: 512,
              lossSum: 1,
              correct: 0,
              gradAk: params.Ak,
              gradAv: params.Av,
              gradHeadW: head.weight,
              gradHeadB: head.bias,
            },
          ],
          { D: Dv, depth: depthV },
          4 << 20,
        ),
      ].map((m) => serializeTrainStepResponse(m).length),
    ];
    const largest = Math.max(...sizes);
    // The head is the one part that is never sliced: the limit bounds its classes.
    const maxClasses = Math.floor(MAX_MESSAGE_BYTES / (4 * (Dv + 1)));
    console.log(
      `largest ViT-B/16 message: ${(largest / 2 ** 20).toFixed(2)} MiB of the ${MAX_MESSAGE_BYTES / 2 ** 20} MiB limit; ` +
        `a head may have ${maxClasses} classes at D = ${Dv}`,
    );
    expect(largest).toBeLessThan(MAX_MESSAGE_BYTES);
    expect(maxClasses).toBeGreaterThan(345 * 10);
  });
});

describe("calls in flight", () => {
  it("refuses calls past the limit at once, finishes the admitted ones, and keeps health and the token check apart", async () => {
    const worker = new GatedWorker();
    worker.covarianceReply = covReply;
    const limit = 2;
    const { server, client } = await serve(worker, { maxCallsInFlight: limit });
    const started = performance.now();
    const calls = Array.from({ length: 5 }, () =>
      client.covariance(covRequest).then(
        () => "ok",
        (e: Error) => e,
      ),
    );
    // The refused ones answer while the admitted ones still wait at the gate.
    const refused = await Promise.all(calls.slice(limit));
    const ms = performance.now() - started;
    for (const err of refused) {
      expect(err).toBeInstanceOf(WorkerRpcError);
      expect(err).toMatchObject({ code: status.RESOURCE_EXHAUSTED });
      expect((err as WorkerRpcError).details).toBe(
        `${limit} calls in flight: this worker takes at most ${limit} at once (--max-calls)`,
      );
    }
    // Saturated: health answers (it is not counted); a caller without the token is refused as such.
    expect(await healthCheck(server.address, "")).toBe("SERVING");
    const anonymous = new GrpcWorkerClient({
      address: server.address,
      deadlineMs: 5_000,
      releaseOnClose: false,
    });
    clients.push(anonymous);
    const noToken = await rejection(anonymous.setup(setupRequest(D, depth)));
    expect(noToken).toMatchObject({ code: status.UNAUTHENTICATED });
    worker.release();
    expect(await Promise.all(calls.slice(0, limit))).toEqual(["ok", "ok"]);
    // The places are free again.
    expect(await Promise.all([client.covariance(covRequest), client.covariance(covRequest)])).toHaveLength(2);
    recordFault({
      fault: `calls past the concurrency limit (${calls.length} at once, limit ${limit})`,
      tried: calls.length - limit,
      survived: calls.length - limit,
      bitIdentical: null,
      detectionMs: Math.round(ms),
      detail: "RESOURCE_EXHAUSTED at once; the admitted calls and later ones served",
    });
  });

  it("announces an HTTP/2 stream limit of the call limit plus room for health checks", async () => {
    const { server } = await serve(new FakeWorker());
    const session = http2.connect(`http://${server.address}`);
    const settings = await new Promise<http2.Settings>((resolve) => session.once("remoteSettings", resolve));
    session.close();
    expect(settings.maxConcurrentStreams).toBe(DEFAULT_MAX_CALLS_IN_FLIGHT + 8);
  });

  it("refuses a call limit that is not a positive integer", async () => {
    await expect(
      serveWorker({ worker: new FakeWorker(), listen: "127.0.0.1:0", maxCallsInFlight: 0 }),
    ).rejects.toThrow(/the call limit must be a positive integer, got 0/);
  });
});
