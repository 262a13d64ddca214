/**
 * The worker server's own behaviour: reflection lists the Worker service (token required), calls run one
 * at a time and a call whose deadline passed while queued never reaches the worker, close() lets in-flight
 * calls finish, and a worker process (runWorkerServer) serves the engine and exits cleanly on SIGTERM.
 */
import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROTOCOL_VERSION } from "../../common/protocol.js";
import { GrpcWorkerClient, WorkerRpcError } from "../../coordinator/transport/grpc_client.js";
import { serveWorker, type WorkerServerHandle } from "../../worker/grpc_server.js";
import { fingerprintFile } from "../../worker/model/load_weights.js";
import { REFERENCE_DIR } from "../helpers/reference_compare.js";
import {
  FakeWorker,
  healthCheck,
  reflect,
  rejection,
  setupRequest,
  TOKEN,
  tokenMetadata,
} from "./grpc_helpers.js";

const D = 8;
const depth = 2;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(() => {
  delete process.env.INFLORA_TOKEN;
});

/** A fake worker whose covariance takes `ms` and which records how many calls ran at once. */
function slowWorker(ms: number) {
  const worker = new FakeWorker();
  const stats = { running: 0, maxRunning: 0, ran: [] as number[] };
  worker.covariance = async (req) => {
    stats.running++;
    stats.maxRunning = Math.max(stats.maxRunning, stats.running);
    await sleep(ms);
    stats.running--;
    stats.ran.push(req.shards[0].index);
    return req.shards.map((s) => ({
      index: s.index,
      tokens: s.samples.length,
      sums: [new Float32Array(D * D), new Float32Array(D * D)],
    }));
  };
  return { worker, stats };
}

const shard = (index: number) => ({ index, split: "train" as const, samples: Int32Array.of(index) });

describe("worker server", () => {
  let server: WorkerServerHandle;
  const { worker, stats } = slowWorker(150);
  let client: GrpcWorkerClient;

  beforeAll(async () => {
    server = await serveWorker({ worker, listen: "127.0.0.1:0", security: { token: TOKEN } });
    client = new GrpcWorkerClient({
      address: server.address,
      security: { token: TOKEN },
      releaseOnClose: false,
    });
    await client.setup(setupRequest(D, depth));
  });

  afterAll(async () => {
    await client?.close();
    await server?.close();
  });

  it("lists inflora.v1.Worker and the health service through reflection, and describes the protocol", async () => {
    const listed = await reflect(server.address, tokenMetadata(), { list_services: "*" });
    const names = listed.list_services_response?.service.map((s) => s.name) ?? [];
    expect(names).toContain("inflora.v1.Worker");
    expect(names).toContain("grpc.health.v1.Health");
    const file = await reflect(server.address, tokenMetadata(), {
      file_containing_symbol: "inflora.v1.Worker",
    });
    expect(file.file_descriptor_response?.file_descriptor_proto.length).toBeGreaterThan(0);
    await expect(
      reflect(server.address, tokenMetadata("nope"), { list_services: "*" }),
    ).rejects.toMatchObject({
      code: status.UNAUTHENTICATED,
    });
  });

  it("runs calls one at a time, and skips a call whose client gave up while it waited", async () => {
    const impatient = new GrpcWorkerClient({
      address: server.address,
      security: { token: TOKEN },
      deadlineMs: 100,
      releaseOnClose: false,
    });
    await impatient.setup(setupRequest(D, depth));
    const results = await Promise.allSettled([
      client.covariance({ stateVersion: 1, shards: [shard(1)] }),
      client.covariance({ stateVersion: 1, shards: [shard(2)] }),
      impatient.covariance({ stateVersion: 1, shards: [shard(3)] }),
    ]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "fulfilled", "rejected"]);
    const late = (results[2] as PromiseRejectedResult).reason;
    expect(late).toBeInstanceOf(WorkerRpcError);
    expect(late.code).toBe(status.DEADLINE_EXCEEDED);
    expect(stats.maxRunning).toBe(1);
    await sleep(200);
    expect(stats.ran).toEqual([1, 2]);
    await impatient.close();
  });

  it("lets in-flight calls finish on close(), then refuses new ones", async () => {
    const inFlight = client.covariance({ stateVersion: 1, shards: [shard(7)] });
    await sleep(30);
    const closed = server.close();
    const [res] = await inFlight;
    expect(res.index).toBe(7);
    await closed;
    const after = await rejection(client.covariance({ stateVersion: 1, shards: [shard(8)] }));
    expect(after).toMatchObject({ code: status.UNAVAILABLE });
  });
});

describe("worker process (runWorkerServer)", () => {
  let child: ChildProcess | undefined;

  afterAll(() => {
    if (child && child.exitCode === null) child.kill("SIGKILL");
  });

  // The in-process test above shows close() waiting for in-flight calls; here the real process: its tfjs
  // compute blocks the event loop, so the signal is handled once the racing call's compute is done.
  it("serves a WorkerEngine, and on SIGTERM shuts down gracefully (a racing call completes) and exits 0", async () => {
    const script = path.join(import.meta.dirname, "grpc_worker_child.ts");
    child = spawn(process.execPath, ["--import", "tsx", script], {
      env: { ...process.env, INFLORA_TOKEN: "", INFLORA_LOG_LEVEL: "info" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d) => {
      stdout += d;
    });
    child.stderr!.on("data", (d) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((resolve) => child!.once("exit", (code) => resolve(code)));
    const address = await new Promise<string>((resolve, reject) => {
      const poll = setInterval(() => {
        const m = /LISTENING (\S+)/.exec(stdout);
        if (m) {
          clearInterval(poll);
          resolve(m[1]);
        }
      }, 20);
      void exited.then((code) => {
        clearInterval(poll);
        reject(new Error(`worker exited (${code}) before listening:\n${stderr}`));
      });
    });
    expect(await healthCheck(address, "")).toBe("SERVING");

    const weights = path.join(REFERENCE_DIR, "tiny_vit.safetensors");
    const remote = new GrpcWorkerClient({ address, deadlineMs: 60_000, releaseOnClose: false });
    await remote.setup({
      runId: "child-run",
      protocolVersion: PROTOCOL_VERSION,
      weightsPath: weights,
      weightsFingerprint: await fingerprintFile(weights),
      model: { imgSize: 32, patchSize: 4, inChans: 3, embedDim: 48, depth: 3, numHeads: 3, mlpHidden: 192 },
      data: {
        dataset: "cifar100",
        dataPath: path.join(REFERENCE_DIR, "cifar_bin"),
        imageSize: 32,
        threads: 0,
      },
    });
    expect(await healthCheck(address, "inflora.v1.Worker")).toBe("SERVING");
    await remote.setTaskState({ version: 1, task: 0, finished: [], heads: [] });
    const samples = Int32Array.from({ length: 16 }, (_, i) => i);
    const inFlight = remote.covariance({ stateVersion: 1, shards: [{ index: 0, split: "train", samples }] });
    await sleep(50);
    child.kill("SIGTERM");
    const [res] = await inFlight;
    expect(res.tokens).toBe(16 * 65);
    expect(await exited).toBe(0);
    expect(stdout).toContain("STOPPED");
    expect(stderr).toMatch(/worker shutting down[\s\S]*worker stopped/);
    await remote.close();
  });
});
