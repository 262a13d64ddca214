/**
 * Hostile bytes at a real worker (issue #15, item 5): a WorkerEngine process behind the bearer token takes a
 * few thousand random and mutated requests at every RPC (fixed seed), with and without the token, through
 * grpc-js with a pass-through serializer (any bytes as the message) and through raw HTTP/2 (gRPC frames
 * whose flags and length prefixes lie). The process never dies, every call ends within its deadline, every
 * refusal is a gRPC status whose message names what was wrong (never a bare JavaScript error), and after
 * every batch the same process answers a health check and a valid covariance call bit-identically to
 * before the fuzzing. Its memory after a full GC is sampled before and after.
 */
import { type ChildProcess, spawn } from "node:child_process";
import http2 from "node:http2";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { Client, credentials, Metadata, type ServiceError, status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_MESSAGE_BYTES, messageLimits } from "../../common/grpc_wire.js";
import {
  type CovarianceResult,
  PROTOCOL_VERSION,
  type SetupRequest,
  type TaskState,
} from "../../common/protocol.js";
import { GrpcWorkerClient } from "../../coordinator/transport/grpc_client.js";
import {
  setupToPb,
  shardsToPb,
  taskStateParts,
  trainStepParts,
} from "../../coordinator/transport/grpc_messages.js";
import * as compute from "../../proto/gen/inflora/v1/compute.js";
import * as setupPb from "../../proto/gen/inflora/v1/setup.js";
import * as statePb from "../../proto/gen/inflora/v1/state.js";
import { fingerprintFile } from "../../worker/model/load_weights.js";
import { recordFault } from "../helpers/fault_table.js";
import { hostilize, mutate, Rng } from "../helpers/protobuf_fuzz.js";
import { REFERENCE_DIR } from "../helpers/reference_compare.js";
import { randomArray } from "../helpers/tiny_vit.js";
import { healthCheck, TOKEN } from "./grpc_helpers.js";

const SEED = 0x15f022;
const BATCHES = Number(process.env.FUZZ_BATCHES ?? 6);
const CASES_PER_BATCH = 250;
const PARALLEL = 6;
/** A call that has not ended by then hangs. */
const CALL_DEADLINE_MS = 20_000;

const D = 48;
const depth = 3;
const r = 4;
const RUN = "fuzz-run";
const PING_VERSION = Number.MAX_SAFE_INTEGER;
const weights = path.join(REFERENCE_DIR, "tiny_vit.safetensors");

type Kind = "unary" | "clientStream" | "serverStream" | "bidi";
interface Rpc {
  readonly name: string;
  readonly kind: Kind;
  /** Valid messages of one call, in order, and their decoder/encoder for value-level mutations. */
  readonly seed: Buffer[];
  readonly decode: (b: Buffer) => object;
  readonly encode: (m: object) => Buffer;
}

interface Outcome {
  readonly code: number;
  readonly details: string;
  readonly ms: number;
  readonly replies: number;
}

let child: ChildProcess;
let address: string;
let exited: Promise<number | null>;
let raw: Client;
let client: GrpcWorkerClient;
let setup: SetupRequest;
let rpcs: Rpc[];
let reference: CovarianceResult[];

const B = Array.from({ length: depth }, (_, i) => randomArray(r * D, i, 0.1));
const state = (version: number): TaskState => ({
  version,
  task: 1,
  finished: [{ task: 0, rank: r, Bk: B, Bv: B, Ak: B.map((_, i) => randomArray(D * r, 10 + i, 0.1)), Av: B }],
  currentB: { rank: r, B },
  heads: [{ classes: 3, weight: randomArray(3 * D, 30, 0.1), bias: randomArray(3, 31, 0.1) }],
});
/**
 * The valid call's state holds no finished adapters: the engine folds finished adapters once per list of
 * tasks (a finished adapter never changes once sent, says the protocol), and a hostile SetTaskState may
 * have folded other values under the same task ids.
 */
const pingState: TaskState = {
  version: PING_VERSION,
  task: 0,
  finished: [],
  currentB: { rank: r, B },
  heads: [{ classes: 3, weight: randomArray(3 * D, 30, 0.1), bias: randomArray(3, 31, 0.1) }],
};
const trainShards = [
  {
    index: 0,
    split: "train" as const,
    samples: Int32Array.of(0, 1),
    targets: Int32Array.of(0, 2),
    augment: { seed: 5, task: 1, epoch: 0 },
  },
  { index: 1, split: "train" as const, samples: Int32Array.of(3), targets: Int32Array.of(1) },
];
const covShards = [{ index: 0, split: "train" as const, samples: Int32Array.of(0, 1, 2) }];
const params = {
  version: 1,
  Ak: B.map((_, i) => randomArray(D * r, 100 + i, 0.01)),
  Av: B.map((_, i) => randomArray(D * r, 150 + i, 0.01)),
  head: { classes: 3, weight: randomArray(3 * D, 7, 0.1), bias: randomArray(3, 8, 0.1) },
};

const buf = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

function memory(): Promise<{ rss: number; heapUsed: number; external: number; gc: boolean }> {
  return new Promise((resolve) => {
    const onMessage = (m: { type?: string }) => {
      if (m?.type !== "memory") return;
      child.off("message", onMessage);
      resolve(m as never);
    };
    child.on("message", onMessage);
    child.send("memory");
  });
}

/** The state the valid calls need, (re)sent: a hostile Setup or Release may have dropped it. */
async function ready(): Promise<void> {
  await client.setup(setup);
  await client.setTaskState(state(1));
  await client.setTaskState(pingState);
}

function same(a: CovarianceResult[], b: CovarianceResult[]): boolean {
  return (
    a.length === b.length &&
    a.every(
      (x, i) =>
        x.index === b[i].index &&
        x.tokens === b[i].tokens &&
        x.sums.every((s, k) =>
          Buffer.from(s.buffer, s.byteOffset, s.byteLength).equals(
            Buffer.from(b[i].sums[k].buffer, b[i].sums[k].byteOffset, b[i].sums[k].byteLength),
          ),
        ),
    )
  );
}

async function ping(): Promise<void> {
  expect(child.exitCode, "the worker process died").toBeNull();
  expect(await healthCheck(address, "")).toBe("SERVING");
  await ready();
  const got = await client.covariance({ stateVersion: PING_VERSION, shards: covShards });
  expect(same(got, reference), "a valid call after the batch answers as before the fuzzing").toBe(true);
}

beforeAll(async () => {
  delete process.env.INFLORA_TOKEN;
  const script = path.join(import.meta.dirname, "fuzz_worker_child.ts");
  child = spawn(process.execPath, ["--expose-gc", "--import", "tsx", script], {
    env: { ...process.env, INFLORA_TOKEN: TOKEN, INFLORA_LOG_LEVEL: "error" },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
  address = await new Promise<string>((resolve, reject) => {
    child.once("message", (m: { type: string; address: string }) => resolve(m.address));
    void exited.then((code) => reject(new Error(`the worker exited (${code}) before listening`)));
  });
  setup = {
    runId: RUN,
    protocolVersion: PROTOCOL_VERSION,
    weightsPath: weights,
    weightsFingerprint: await fingerprintFile(weights),
    model: { imgSize: 32, patchSize: 4, inChans: 3, embedDim: D, depth, numHeads: 3, mlpHidden: 192 },
    data: { dataset: "cifar100", dataPath: path.join(REFERENCE_DIR, "cifar_bin"), imageSize: 32, threads: 0 },
  };
  client = new GrpcWorkerClient({
    address,
    security: { token: TOKEN },
    deadlineMs: 60_000,
    releaseOnClose: false,
  });
  await ready();
  reference = await client.covariance({ stateVersion: PING_VERSION, shards: covShards });
  // Lets the fuzzer send more than the server takes.
  raw = new Client(address, credentials.createInsecure(), messageLimits(4 * MAX_MESSAGE_BYTES));

  const enc =
    <T>(t: { encode(m: T): { finish(): Uint8Array } }) =>
    (m: object) =>
      buf(t.encode(m as T).finish());
  const dec =
    <T>(t: { decode(b: Uint8Array): T }) =>
    (b: Buffer) =>
      t.decode(b) as object;
  rpcs = [
    {
      name: "Setup",
      kind: "unary",
      seed: [enc(setupPb.SetupRequest)(setupToPb(setup))],
      decode: dec(setupPb.SetupRequest),
      encode: enc(setupPb.SetupRequest),
    },
    {
      name: "SetTaskState",
      kind: "clientStream",
      seed: [...taskStateParts(state(2), RUN, D)].map(enc(statePb.SetTaskStateRequest)),
      decode: dec(statePb.SetTaskStateRequest),
      encode: enc(statePb.SetTaskStateRequest),
    },
    {
      name: "Covariance",
      kind: "serverStream",
      seed: [
        enc(compute.CovarianceRequest)({
          runId: RUN,
          stateVersion: 1,
          shards: shardsToPb(covShards),
          microBatch: 0,
        }),
      ],
      decode: dec(compute.CovarianceRequest),
      encode: enc(compute.CovarianceRequest),
    },
    {
      name: "TrainStep",
      kind: "bidi",
      seed: [...trainStepParts({ stateVersion: 1, params, shards: trainShards }, RUN, D)].map(
        enc(compute.TrainStepRequest),
      ),
      decode: dec(compute.TrainStepRequest),
      encode: enc(compute.TrainStepRequest),
    },
    {
      name: "Evaluate",
      kind: "serverStream",
      seed: [
        enc(compute.EvaluateRequest)({
          runId: RUN,
          stateVersion: 1,
          shards: shardsToPb(covShards.map((s) => ({ ...s, split: "test" as const }))),
          output: compute.EvalOutput.EVAL_OUTPUT_LOGITS,
        }),
      ],
      decode: dec(compute.EvaluateRequest),
      encode: enc(compute.EvaluateRequest),
    },
    {
      name: "Release",
      kind: "unary",
      seed: [enc(setupPb.ReleaseRequest)({ runId: RUN })],
      decode: dec(setupPb.ReleaseRequest),
      encode: enc(setupPb.ReleaseRequest),
    },
  ];
}, 120_000);

afterAll(async () => {
  raw?.close();
  await client?.close();
  if (child && child.exitCode === null) child.kill("SIGKILL");
});

type TokenMode = "token" | "none" | "wrong" | "garbage";

function metadataFor(mode: TokenMode, rng: Rng): Metadata {
  const md = new Metadata();
  if (mode === "token") md.set("authorization", `Bearer ${TOKEN}`);
  else if (mode === "wrong") md.set("authorization", `Bearer ${TOKEN.slice(0, -1)}x`);
  else if (mode === "garbage") {
    const junk = Array.from({ length: rng.pick([0, 1, 40, 4000]) }, () =>
      String.fromCharCode(0x21 + rng.int(94)),
    ).join("");
    md.set("authorization", rng.pick([`Basic ${junk}`, `Bearer ${junk}`, junk, `bearer  ${TOKEN} x`]));
  }
  return md;
}

/** One call with these raw messages; resolves with the status (never rejects). */
function call(rpc: Rpc, messages: Buffer[], md: Metadata): Promise<Outcome> {
  const started = performance.now();
  const path = `/inflora.v1.Worker/${rpc.name}`;
  const pass = (b: Buffer) => b;
  const options = { deadline: Date.now() + CALL_DEADLINE_MS };
  return new Promise((resolve) => {
    let replies = 0;
    let done = false;
    const finish = (code: number, details: string) => {
      if (done) return;
      done = true;
      resolve({ code, details, ms: performance.now() - started, replies });
    };
    const callback = (err: ServiceError | null) =>
      err ? finish(err.code, err.details) : finish(status.OK, "");
    if (rpc.kind === "unary") {
      // A unary call carries exactly one message; zero or two are the raw HTTP/2 cases' business.
      raw.makeUnaryRequest(path, pass, pass, messages[0] ?? Buffer.alloc(0), md, options, callback);
      return;
    }
    if (rpc.kind === "clientStream") {
      const c = raw.makeClientStreamRequest(path, pass, pass, md, options, callback);
      for (const m of messages) c.write(m);
      c.end();
      return;
    }
    const c =
      rpc.kind === "serverStream"
        ? raw.makeServerStreamRequest(path, pass, pass, messages[0] ?? Buffer.alloc(0), md, options)
        : raw.makeBidiStreamRequest(path, pass, pass, md, options);
    c.on("data", () => replies++);
    c.on("error", () => undefined);
    c.on("status", (s: { code: number; details: string }) => finish(s.code, s.details));
    if (rpc.kind === "bidi") {
      const w = c as unknown as { write(b: Buffer): void; end(): void };
      for (const m of messages) w.write(m);
      w.end();
    }
  });
}

/** A fuzz case: which RPC, which token, which messages, and what was done to them. */
interface Case {
  readonly rpc: Rpc;
  readonly token: TokenMode;
  readonly messages: Buffer[];
  readonly how: string;
}

function makeCase(rng: Rng): Case {
  for (;;) {
    const c = draw(rng);
    // Past twice the server's limit is no new case, only slower to send.
    if (c.messages.every((m) => m.length <= 2 * MAX_MESSAGE_BYTES)) return c;
  }
}

function draw(rng: Rng): Case {
  const rpc = rng.pick(rpcs);
  const token = rng.chance(0.7) ? "token" : rng.pick<TokenMode>(["none", "wrong", "garbage"]);
  const others = rpcs.filter((o) => o !== rpc).flatMap((o) => o.seed.slice(0, 1));
  let messages = [...rpc.seed];
  const hows: string[] = [];
  const touched = 1 + (rng.chance(0.2) ? rng.int(3) : 0);
  for (let t = 0; t < touched && messages.length; t++) {
    const i = rng.int(messages.length);
    if (rng.chance(0.5)) {
      const m = mutate(rng, messages[i], others);
      messages[i] = m.bytes;
      hows.push(`message ${i}: ${m.how}`);
    } else {
      // Value-level changes start from the valid message (this one may already be mangled); a value the
      // encoder refuses (a negative uint32) becomes a byte-level mutation instead.
      const h = hostilize(rng, rpc.decode(rpc.seed[i] ?? rpc.seed[0]));
      try {
        messages[i] = rpc.encode(h.value);
        hows.push(`message ${i}: ${h.how}`);
      } catch {
        const m = mutate(rng, messages[i], others);
        messages[i] = m.bytes;
        hows.push(`message ${i}: ${m.how}`);
      }
    }
  }
  if (rpc.kind === "clientStream" || rpc.kind === "bidi") {
    const op = rng.int(8);
    if (op === 0) {
      messages = [];
      hows.push("no messages");
    } else if (op === 1 && messages.length > 1) {
      messages.splice(1 + rng.int(messages.length - 1), 1);
      hows.push("a message dropped");
    } else if (op === 2) {
      messages.push(messages[rng.int(messages.length)]);
      hows.push("a message repeated");
    } else if (op === 3) {
      messages.reverse();
      hows.push("messages reversed");
    }
  }
  return { rpc, token, messages, how: hows.join("; ") };
}

/** Messages a refusal may not have: a JavaScript error leaking out instead of a check naming the field. */
const GENERIC =
  /Cannot read propert|is not a function|is not iterable|undefined|Maximum call stack|Invalid (typed )?array length|out of memory|RangeError|TypeError|URIError|Unexpected|Error deserializing request/;

/**
 * grpc-js's own refusals of frames it cannot take, before any handler: each says what was wrong with the
 * frame (the field names are ours to give once the message is decoded).
 */
const GRPC_JS_FRAMING =
  /^(Received message larger than max \(\d+ vs\.? \d+\)|Received message that decompresses to a size larger than \d+|Failed to decompress message|Received message compressed with unsupported encoding ".*"|Received (no|a second) request message for server streaming method \S+|The server does not implement the method \S*)$/;

/** Whether a status names what was wrong. */
function named(o: Outcome): boolean {
  if (GENERIC.test(o.details)) return false;
  if (GRPC_JS_FRAMING.test(o.details)) return true;
  switch (o.code) {
    case status.OK:
      return true;
    case status.INVALID_ARGUMENT:
      return /^invalid request: [^:\s][^:]*: \S/.test(o.details);
    case status.UNAUTHENTICATED:
      return /^(missing authorization metadata|more than one authorization header|authorization metadata is not a Bearer token|wrong bearer token)/.test(
        o.details,
      );
    case status.ABORTED:
      return /^worker lacks (state|params) version \d+$/.test(o.details);
    case status.FAILED_PRECONDITION:
      return o.details.length > 10;
    case status.RESOURCE_EXHAUSTED:
      return /^\d+ calls in flight: this worker takes at most \d+ at once/.test(o.details);
    case status.NOT_FOUND:
      // The health service's answer for a service it does not know.
      return /^Health status unknown for service /.test(o.details);
    default:
      return false;
  }
}

/** Digits out, so that refusals that differ only in numbers count once. */
const shapeOf = (details: string) => details.replace(/\d+/g, "N").slice(0, 160);

interface Tally {
  /** The slowest call, for the trace. */
  slowest?: string;
  cases: number;
  maxMs: number;
  byCode: Map<string, number>;
  messages: Set<string>;
  failures: string[];
}

function judge(t: Tally, c: { rpc: string; token: string; how: string }, o: Outcome): void {
  t.cases++;
  if (o.ms > t.maxMs) t.slowest = `${c.rpc} ${status[o.code]} ${o.ms.toFixed(0)} ms: ${c.how}`;
  t.maxMs = Math.max(t.maxMs, o.ms);
  const code = status[o.code] ?? String(o.code);
  t.byCode.set(code, (t.byCode.get(code) ?? 0) + 1);
  if (o.code !== status.OK) t.messages.add(`${code}: ${shapeOf(o.details)}`);
  const where = `${c.rpc} (${c.token}) ${c.how}`;
  if (o.code === status.DEADLINE_EXCEEDED) t.failures.push(`hung: ${where}`);
  else if (c.token !== "token" && o.code !== status.UNAUTHENTICATED && !/^(health|unknown)$/.test(c.rpc))
    t.failures.push(`${code} without a valid token: ${where}: ${o.details}`);
  else if (!named(o)) t.failures.push(`${code} "${o.details.slice(0, 300)}": ${where}`);
  else if (o.details.length > 2048) t.failures.push(`a ${o.details.length}-character message: ${where}`);
}

async function inParallel<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) await fn(items[next++]);
    }),
  );
}

/** A gRPC call over a raw HTTP/2 stream: frames with any flags and length prefixes, any headers. */
function http2Call(
  session: http2.ClientHttp2Session,
  rpcPath: string,
  body: Buffer,
  headers: Record<string, string>,
): Promise<Outcome & { http?: number }> {
  const started = performance.now();
  return new Promise((resolve) => {
    let done = false;
    let replies = 0;
    let http: number | undefined;
    const finish = (code: number, details: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ code, details, ms: performance.now() - started, replies, http });
    };
    const timer = setTimeout(() => {
      req.close(http2.constants.NGHTTP2_CANCEL);
      finish(status.DEADLINE_EXCEEDED, "no status within the deadline");
    }, CALL_DEADLINE_MS);
    const req = session.request({
      ":method": "POST",
      ":path": rpcPath,
      "content-type": "application/grpc",
      te: "trailers",
      authorization: `Bearer ${TOKEN}`,
      ...headers,
    });
    const fromHeaders = (h: http2.IncomingHttpHeaders) => {
      if (h[":status"] !== undefined) http = Number(h[":status"]);
      if (h["grpc-status"] !== undefined)
        finish(Number(h["grpc-status"]), decodeURIComponent(String(h["grpc-message"] ?? "")));
    };
    req.on("response", fromHeaders);
    req.on("trailers", fromHeaders);
    req.on("data", () => replies++);
    req.on("error", () => undefined);
    req.on("close", () => finish(-1, `HTTP ${http}, no gRPC status (RST_STREAM ${req.rstCode})`));
    req.end(body);
  });
}

function frame(message: Buffer, flag = 0, declared = message.length): Buffer {
  const head = Buffer.alloc(5);
  head[0] = flag;
  head.writeUInt32BE(declared >>> 0, 1);
  return Buffer.concat([head, message]);
}

describe("hostile bytes at a real worker", () => {
  it("survives random and mutated requests at every RPC, each refused by name", async () => {
    const rng = new Rng(SEED);
    const tally: Tally = { cases: 0, maxMs: 0, byCode: new Map(), messages: new Set(), failures: [] };
    const started = performance.now();
    let before: Awaited<ReturnType<typeof memory>> | undefined;
    for (let b = 0; b < BATCHES; b++) {
      const cases = Array.from({ length: CASES_PER_BATCH }, () => makeCase(rng));
      await inParallel(cases, PARALLEL, async (c) => {
        const o = await call(c.rpc, c.messages, metadataFor(c.token, rng));
        judge(tally, { rpc: c.rpc.name, token: c.token, how: c.how }, o);
      });
      const t0 = performance.now();
      await ping();
      if (process.env.FUZZ_TRACE)
        console.log(
          `batch ${b}: ${((performance.now() - started) / 1000).toFixed(1)} s, ping ${(performance.now() - t0).toFixed(0)} ms, slowest ${tally.slowest}`,
        );
      // After the first batch: the engine's caches and grpc-js's buffers are warm.
      if (b === 0) before = await memory();
    }
    const after = await memory();
    const seconds = (performance.now() - started) / 1000;
    const mb = (n: number) => (n / 2 ** 20).toFixed(1);
    console.log(
      `fuzz: ${tally.cases} cases in ${seconds.toFixed(1)} s, slowest answer ${tally.maxMs.toFixed(0)} ms; ` +
        `worker rss ${mb(before!.rss)} → ${mb(after.rss)} MiB, heapUsed ${mb(before!.heapUsed)} → ${mb(after.heapUsed)} MiB ` +
        `(gc: ${after.gc}); statuses ${JSON.stringify(Object.fromEntries(tally.byCode))}`,
    );
    console.log(
      `fuzz: ${tally.messages.size} distinct refusals:\n  ${[...tally.messages].sort().join("\n  ")}`,
    );
    expect(tally.failures.slice(0, 20)).toEqual([]);
    expect(after.heapUsed - before!.heapUsed, "heap growth after GC").toBeLessThan(32 * 2 ** 20);
    expect(after.rss - before!.rss, "RSS growth").toBeLessThan(192 * 2 ** 20);
    expect(await Promise.race([exited, Promise.resolve("alive")])).toBe("alive");
    recordFault({
      fault: `random/mutated protobuf frames at every worker RPC (${tally.cases} cases, with and without the token)`,
      tried: tally.cases,
      survived: tally.cases,
      bitIdentical: null,
      detectionMs: Math.round(tally.maxMs),
      detail: `slowest answer; worker heap ${mb(before!.heapUsed)}→${mb(after.heapUsed)} MiB, RSS ${mb(before!.rss)}→${mb(after.rss)} MiB after GC; ${tally.messages.size} distinct named refusals`,
    });
  }, 300_000);

  it("answers gRPC frames whose flags, length prefixes and headers lie, over raw HTTP/2", async () => {
    const rng = new Rng(SEED + 1);
    const tally: Tally = { cases: 0, maxMs: 0, byCode: new Map(), messages: new Set(), failures: [] };
    let session = http2.connect(`http://${address}`);
    const resets: string[] = [];
    const gzipBomb = gzipSync(Buffer.alloc(MAX_MESSAGE_BYTES + 1024));
    const lies: [string, (m: Buffer) => Buffer, Record<string, string>?][] = [
      ["a valid frame", (m) => frame(m)],
      ["compressed flag without an encoding", (m) => frame(m, 1)],
      ["flag byte 0x7f", (m) => frame(m, 0x7f)],
      ["a declared length one past the data", (m) => frame(m, 0, m.length + 1)],
      ["a declared length of 2^32 − 1", (m) => frame(m, 0, 0xffffffff)],
      ["a declared length just past the limit", (m) => frame(m, 0, MAX_MESSAGE_BYTES + 1)],
      ["a declared length short of the data", (m) => frame(m, 0, Math.max(0, m.length - 3))],
      ["half a frame header", () => Buffer.from([0, 0, 0])],
      ["no frame at all", () => Buffer.alloc(0)],
      ["two frames", (m) => Buffer.concat([frame(m), frame(m)])],
      ["gzip frame", (m) => frame(gzipSync(m), 1), { "grpc-encoding": "gzip" }],
      ["a gzip bomb past the size limit", () => frame(gzipBomb, 1), { "grpc-encoding": "gzip" }],
      ["corrupt gzip", (m) => frame(m, 1), { "grpc-encoding": "gzip" }],
      ["an unknown encoding", (m) => frame(m, 1), { "grpc-encoding": "br" }],
      ["a JSON content type", (m) => frame(m), { "content-type": "application/json" }],
      ["a garbage timeout", (m) => frame(m), { "grpc-timeout": "99999999H" }],
      ["no token", (m) => frame(m), { authorization: "" }],
      ["a 60 KB header", (m) => frame(m), { "x-junk": "j".repeat(60_000) }],
    ];
    const paths = [
      ...rpcs.map((p) => `/inflora.v1.Worker/${p.name}`),
      "/inflora.v1.Worker/Nope",
      "/grpc.health.v1.Health/Check",
      "/",
    ];
    for (let round = 0; round < 6; round++) {
      const cases = lies.flatMap(([what, make, headers]) =>
        [0, 1].map(() => {
          const rpcPath = rng.pick(paths);
          const rpc = rpcs.find((p) => rpcPath.endsWith(`/${p.name}`));
          const message = rpc
            ? rng.chance(0.5)
              ? rpc.seed[0]
              : mutate(rng, rpc.seed[0], []).bytes
            : rng.bytes(20);
          return { what, rpcPath, body: make(message), headers: headers ?? {} };
        }),
      );
      await inParallel(cases, PARALLEL, async (c) => {
        if (session.closed || session.destroyed) session = http2.connect(`http://${address}`);
        const o = await http2Call(session, c.rpcPath, c.body, c.headers);
        if (o.code === -1) {
          // Not gRPC at all: grpc-js answers HTTP 415 (as the gRPC spec says), which is a refusal by name.
          if (!(o.http === 415 && c.headers["content-type"]))
            resets.push(`${c.what} at ${c.rpcPath}: ${o.details}`);
          tally.cases++;
          return;
        }
        const token = c.headers.authorization === "" ? "none" : "token";
        // Health needs no token; grpc-js answers unknown methods before any interceptor runs.
        const rpc = c.rpcPath.startsWith("/grpc.health")
          ? "health"
          : rpcs.some((p) => c.rpcPath === `/inflora.v1.Worker/${p.name}`)
            ? c.rpcPath
            : "unknown";
        judge(tally, { rpc, token, how: c.what }, o);
      });
      await ping();
    }
    session.close();
    console.log(
      `fuzz (raw HTTP/2): ${tally.cases} statuses ${JSON.stringify(Object.fromEntries(tally.byCode))}, ` +
        `${resets.length} streams reset; slowest ${tally.maxMs.toFixed(0)} ms; refusals:\n  ${[...tally.messages].sort().join("\n  ")}` +
        (resets.length ? `\n  resets: ${[...new Set(resets)].slice(0, 10).join("\n  ")}` : ""),
    );
    expect(tally.failures.slice(0, 20)).toEqual([]);
    expect(resets).toEqual([]);
    recordFault({
      fault: `gRPC frames with lying flags, length prefixes and headers over raw HTTP/2 (${tally.cases} cases)`,
      tried: tally.cases,
      survived: tally.cases,
      bitIdentical: null,
      detectionMs: Math.round(tally.maxMs),
      detail:
        "slowest answer; a status by name (or HTTP 415 for a non-gRPC content type), the next valid call served",
    });
  }, 120_000);

  // Found by reading what the fuzzer's list blow-ups reach: each announced finished task cost some 200
  // bytes of bookkeeping, so one 15 MiB header took 660 MiB of the worker's heap until the call ended.
  it("refuses a task-state header announcing 2.7 million finished tasks before tracking them", async () => {
    const n = 2_700_000;
    const header = Buffer.from(
      statePb.SetTaskStateRequest.encode({
        part: {
          $case: "header",
          value: {
            runId: RUN,
            version: 3,
            task: 1,
            finished: Array.from({ length: n }, () => ({ task: 0, rank: 1 })),
            heads: 0,
          },
        },
      }).finish(),
    );
    const rpc = rpcs.find((p) => p.name === "SetTaskState")!;
    const o = await call(rpc, [header], metadataFor("token", new Rng(1)));
    expect(o.details).toBe(`invalid request: header.finished: ${n} finished tasks announced`);
    expect(o.code).toBe(status.INVALID_ARGUMENT);
    await ping();
  });
});
