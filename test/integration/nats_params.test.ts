/**
 * Parameters over NATS, with a real nats-server and real gRPC: the coordinator publishes a step's
 * parameters once and sends subscribed workers only their version and SHA-256; the worker uses the
 * published bytes only when the digest matches. A worker that did not get them, or got forged ones,
 * answers "stale params" and receives them over gRPC — either way it computes with exactly the
 * coordinator's parameters.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectNats } from "../../common/nats_connect.js";
import { encodeParamSet } from "../../common/param_set.js";
import type { MicroShard, TrainParams, TrainStepResult, WorkerClient } from "../../common/protocol.js";
import { startThread } from "../../coordinator/threads/call_thread.js";
import { GrpcWorkerClient } from "../../coordinator/transport/grpc_client.js";
import {
  natsParamsBroadcast,
  type ParamsBroadcast,
  type PublishedParams,
  paramsSubject,
} from "../../coordinator/transport/params_broadcast.js";
import { TransportThreads } from "../../coordinator/transport/threaded_client.js";
import { serveWorker, type WorkerServerHandle } from "../../worker/grpc_server.js";
import { NatsParamsFeed, type ParamsFeed } from "../../worker/nats_params.js";
import { type NatsTestServer, startNatsServer } from "../helpers/nats_server.js";
import { FakeWorker, setupRequest } from "./grpc_helpers.js";

const D = 8;
const depth = 2;
const r = 2;
const RUN = "run-params";
const values = (n: number, seed: number) =>
  Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 3 + i));
const params = (version: number, seed: number): TrainParams => ({
  version,
  Ak: [values(D * r, seed), values(D * r, seed + 1)],
  Av: [values(D * r, seed + 2), values(D * r, seed + 3)],
  head: { classes: 3, weight: values(3 * D, seed + 4), bias: values(3, seed + 5) },
});
const shards: MicroShard[] = [
  { index: 0, split: "train", samples: Int32Array.of(1, 2), targets: Int32Array.of(0, 2) },
];
const grads = (s: MicroShard): TrainStepResult => ({
  index: s.index,
  count: s.samples.length,
  lossSum: 1,
  correct: 0,
  gradAk: [values(D * r, 1), values(D * r, 2)],
  gradAv: [values(D * r, 3), values(D * r, 4)],
  gradHeadW: values(3 * D, 5),
  gradHeadB: values(3, 6),
});

let nats: NatsTestServer;
let coordinatorNc: NatsConnection;
let workerNc: NatsConnection;
let feed: NatsParamsFeed;
const worker = new FakeWorker();
let server: WorkerServerHandle;
let client: GrpcWorkerClient;
let threads: TransportThreads;
let threaded: WorkerClient;
/** Steps whose parameters the worker took from NATS (the feed found the bytes the digest named). */
let fromNats = 0;
let broadcast: ParamsBroadcast;
/** Digests the client is told for versions nobody published (or published otherwise). */
const claimed = new Map<number, string>();

beforeAll(async () => {
  nats = await startNatsServer();
  coordinatorNc = await connectNats(nats.url);
  workerNc = await connectNats(nats.url);
  feed = new NatsParamsFeed(workerNc);
  const counting: ParamsFeed = {
    follow: (subject, D, depth) => feed.follow(subject, D, depth),
    get: async (version, sha256, waitMs) => {
      const p = await feed.get(version, sha256, waitMs);
      if (p) fromNats++;
      return p;
    },
    close: () => feed.close(),
  };
  server = await serveWorker({ worker, listen: "127.0.0.1:0", paramsFeed: counting });
  broadcast = natsParamsBroadcast(coordinatorNc, RUN);
  const published: PublishedParams = {
    subject: broadcast.subject,
    digestOf: (version) => claimed.get(version) ?? broadcast.digestOf(version),
  };
  client = new GrpcWorkerClient(
    { address: server.address, name: "worker-a", releaseOnClose: false },
    published,
  );
  const reply = await client.setup(setupRequest(D, depth, RUN));
  expect(reply.transport).toEqual({ params_over_nats: true });
  const of = new URL("../../coordinator/transport/threaded_client.ts", import.meta.url).href;
  threads = new TransportThreads(1, () => startThread("transport_thread", of));
  threaded = threads.connect({ address: server.address, name: "worker-t", releaseOnClose: false }, published);
  expect((await threaded.setup(setupRequest(D, depth, RUN))).transport).toEqual({ params_over_nats: true });
  worker.trainReply = (req) => req.shards.map(grads);
}, 60_000);

afterAll(async () => {
  await threaded?.close();
  await threads?.close();
  await client?.close();
  await server?.close();
  await feed?.close();
  await workerNc?.close();
  await coordinatorNc?.close();
  await nats?.stop();
});

const lastParams = () => worker.trainRequests.at(-1)!.params as TrainParams;
const sameParams = (a: TrainParams, b: TrainParams) => {
  expect(a.version).toBe(b.version);
  for (const k of [0, 1]) {
    expect(a.Ak[k]).toEqual(b.Ak[k]);
    expect(a.Av[k]).toEqual(b.Av[k]);
  }
  expect(a.head).toEqual(b.head);
};

describe("parameters over NATS", () => {
  it("a subscribed worker takes the published parameters; only the digest crossed gRPC", async () => {
    for (const version of [11, 12, 13]) {
      const p = params(version, version);
      broadcast.publish(p, D);
      expect(broadcast.digestOf(version)).toMatch(/^[0-9a-f]{64}$/);
      const res = await client.trainStep({ stateVersion: 1, params: p, shards });
      expect(res[0].gradAk[1]).toEqual(values(D * r, 2));
      sameParams(lastParams(), p);
    }
    expect(client.paramsByDigest).toEqual({ sent: 3, resent: 0 });
  });

  it("a client on a transport thread gets the digests from the coordinator's broadcast", async () => {
    const before = fromNats;
    const p = params(40, 4);
    broadcast.publish(p, D);
    await threaded.trainStep({ stateVersion: 1, params: p, shards });
    sameParams(lastParams(), p);
    expect(fromNats).toBe(before + 1);
    // A digest of bytes nobody published: the worker misses them and the thread resends them over gRPC.
    const q = params(41, 5);
    claimed.set(41, "ef".repeat(32));
    await threaded.trainStep({ stateVersion: 1, params: q, shards });
    sameParams(lastParams(), q);
    expect(fromNats).toBe(before + 1);
  });

  it("parameters that never arrived are resent over gRPC", async () => {
    const p = params(20, 7);
    const before = { ...client.paramsByDigest };
    // A digest for bytes nobody published.
    claimed.set(20, "ab".repeat(32));
    await client.trainStep({ stateVersion: 1, params: p, shards });
    sameParams(lastParams(), p);
    expect(client.paramsByDigest).toEqual({ sent: before.sent + 1, resent: before.resent + 1 });
  });

  it("forged parameters under the same version are never used", async () => {
    const real = params(30, 1);
    const forged = params(30, 99);
    // The forgery arrives first and last; the worker uses the bytes the coordinator named.
    coordinatorNc.publish(paramsSubject(RUN), encodeParamSet(forged, D));
    broadcast.publish(real, D);
    coordinatorNc.publish(paramsSubject(RUN), encodeParamSet(forged, D));
    await coordinatorNc.flush();
    const before = { ...client.paramsByDigest };
    await client.trainStep({ stateVersion: 1, params: real, shards });
    expect(client.paramsByDigest.sent).toBe(before.sent + 1);
    sameParams(lastParams(), real);
    expect(client.paramsByDigest.resent).toBe(before.resent);

    // Only forged bytes on the subject: resent over gRPC, and the worker still computes with the real ones.
    const next = params(31, 2);
    const forgedNext = encodeParamSet(params(31, 50), D);
    coordinatorNc.publish(paramsSubject(RUN), forgedNext);
    claimed.set(31, "cd".repeat(32));
    await client.trainStep({ stateVersion: 1, params: next, shards });
    sameParams(lastParams(), next);
    expect(client.paramsByDigest.resent).toBe(before.resent + 1);
  });
});
