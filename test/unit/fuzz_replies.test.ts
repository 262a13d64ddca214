/**
 * Malformed replies into the coordinator's reply check (issue #15, item 5): valid reply streams of every
 * streamed RPC, as a worker encodes them, mutated byte by byte (bit flips, truncation, lying length
 * prefixes, wrong wire types, …) or value by value (NaN, huge sizes, shapes that do not match their data),
 * reordered, repeated or cut short, then decoded by the client's own deserializers and fed to the reply
 * check. Every one either passes as a well-formed result (right sizes, finite values) or is refused with a
 * MalformedReplyError naming worker and field — never another exception. Fixed seed.
 */

import { describe, expect, it } from "vitest";
import { isMalformedReply, type MicroShard } from "../../common/protocol.js";
import { encodeTensor } from "../../common/tensor_codec.js";
import {
  CovarianceReplies,
  EvalReplies,
  MalformedReplyError,
  type ReplyContext,
  TrainReplies,
  tolerantReplies,
  UndecodableReply,
} from "../../coordinator/transport/grpc_replies.js";
import * as pb from "../../proto/gen/inflora/v1/compute.js";
import { WorkerService } from "../../proto/gen/inflora/v1/worker.js";
import { covarianceMessages, serializeTrainStepResponse, trainMessages } from "../../worker/grpc_service.js";
import { recordFault } from "../helpers/fault_table.js";
import { hostilize, mutate, Rng } from "../helpers/protobuf_fuzz.js";

const SEED = 0x15f023;
const CASES = 2000;
const D = 8;
const depth = 2;
const r = 2;
const classes = 3;
const client = tolerantReplies(WorkerService);

const shards: MicroShard[] = [
  { index: 0, split: "train", samples: Int32Array.of(1, 2), targets: Int32Array.of(0, 1) },
  { index: 5, split: "train", samples: Int32Array.of(3), targets: Int32Array.of(2) },
];
const values = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(seed + i));

/** What a worker sends: per RPC, a valid reply stream's messages as bytes (small slices, many messages). */
function validStreams(): Record<"covariance" | "trainStep" | "evaluate", Buffer[]> {
  const dims = { D, depth };
  const cov = [
    ...covarianceMessages(
      shards.map((s, k) => ({
        index: s.index,
        tokens: 5 * s.samples.length,
        sums: [values(D * D, k), values(D * D, k + 10)],
      })),
      dims,
      3 * D * 4,
    ),
  ].map((m) => Buffer.from(pb.CovarianceResponse.encode(m).finish()));
  const train = [
    ...trainMessages(
      shards.map((s, k) => ({
        index: s.index,
        count: s.samples.length,
        lossSum: 1.25,
        correct: 1,
        gradAk: [values(D * r, k), values(D * r, k + 1)],
        gradAv: [values(D * r, k + 2), values(D * r, k + 3)],
        gradHeadW: values(classes * D, k + 4),
        gradHeadB: values(classes, k + 5),
      })),
      dims,
      40 * 4,
    ),
  ].map(serializeTrainStepResponse);
  const evaluate = shards.map((s, k) =>
    Buffer.from(
      pb.EvaluateResponse.encode({
        shardIndex: s.index,
        rowOffset: 0,
        logits: encodeTensor(values(s.samples.length * classes, k), [s.samples.length, classes]),
      }).finish(),
    ),
  );
  return { covariance: cov, trainStep: train, evaluate };
}

type Method = keyof ReturnType<typeof validStreams>;
const decoders: Record<
  Method,
  { decode(b: Uint8Array): object; encode(m: never): { finish(): Uint8Array } }
> = {
  covariance: pb.CovarianceResponse,
  trainStep: pb.TrainStepResponse,
  evaluate: pb.EvaluateResponse,
};

/** Runs a reply stream through the check the client runs; returns the results or the error thrown. */
function check(method: Method, messages: Buffer[], known: boolean): unknown {
  const ctx: ReplyContext = { worker: "w-fuzz", method, D, depth };
  const deserialize = client[method].responseDeserialize;
  try {
    const replies =
      method === "covariance"
        ? new CovarianceReplies(ctx, shards)
        : method === "trainStep"
          ? new TrainReplies(ctx, shards, known ? r : undefined, known ? classes : undefined)
          : new EvalReplies(ctx, shards, known ? classes : undefined);
    for (const m of messages) (replies as { add(x: unknown): void }).add(deserialize(m));
    return replies.finish();
  } catch (err) {
    return err;
  }
}

/** Independent of the check: what a result the reduction may take looks like. */
function wellFormed(method: Method, results: unknown): string | undefined {
  const list = results as { index: number }[];
  if (list.map((x) => x.index).join() !== shards.map((s) => s.index).join()) return "shards";
  const finite = (a: Float32Array) => a.every((v) => Number.isFinite(v));
  for (const [k, res] of list.entries()) {
    const n = shards[k].samples.length;
    if (method === "covariance") {
      const c = res as unknown as { tokens: number; sums: Float32Array[] };
      if (c.sums.length !== depth || c.sums.some((s) => s.length !== D * D || !finite(s))) return "sums";
      if (!(c.tokens >= n && c.tokens % n === 0)) return "tokens";
    } else if (method === "trainStep") {
      const t = res as unknown as {
        count: number;
        lossSum: number;
        gradAk: Float32Array[];
        gradHeadB: Float32Array;
      };
      if (t.count !== n || !Number.isFinite(t.lossSum)) return "summary";
      if (t.gradAk.some((g) => g.length % D !== 0 || !finite(g)) || !finite(t.gradHeadB)) return "grads";
    } else {
      const e = res as unknown as { logits: Float32Array };
      if (e.logits.length % n !== 0 || e.logits.length === 0 || !finite(e.logits)) return "logits";
    }
  }
  return undefined;
}

describe("malformed replies into the coordinator's reply check", () => {
  it("accepts the valid streams", () => {
    const valid = validStreams();
    for (const method of Object.keys(valid) as Method[]) {
      for (const known of [true, false]) {
        const res = check(method, valid[method], known);
        expect(res, `${method}`).not.toBeInstanceOf(Error);
        expect(wellFormed(method, res)).toBeUndefined();
      }
    }
  });

  it("refuses every bad reply with a MalformedReplyError naming the field, never another exception", () => {
    const rng = new Rng(SEED);
    const valid = validStreams();
    const methods = Object.keys(valid) as Method[];
    let refused = 0;
    let accepted = 0;
    const fields = new Set<string>();
    const failures: string[] = [];
    const started = performance.now();
    for (let c = 0; c < CASES; c++) {
      const method = rng.pick(methods);
      const seed = valid[method];
      let messages = [...seed];
      const hows: string[] = [];
      const i = rng.int(messages.length);
      if (rng.chance(0.5)) {
        const others = methods.filter((m) => m !== method).map((m) => valid[m][0]);
        const m = mutate(rng, messages[i], others);
        messages[i] = m.bytes;
        hows.push(`message ${i}: ${m.how}`);
      } else {
        const h = hostilize(rng, decoders[method].decode(seed[i]));
        try {
          messages[i] = Buffer.from(decoders[method].encode(h.value as never).finish());
          hows.push(`message ${i}: ${h.how}`);
        } catch {
          messages[i] = Buffer.alloc(0);
          hows.push(`message ${i}: emptied`);
        }
      }
      const op = rng.int(6);
      if (op === 0) messages = messages.slice(0, rng.int(messages.length));
      else if (op === 1) messages.push(messages[rng.int(messages.length)]);
      else if (op === 2) messages.reverse();
      const known = rng.chance(0.5);
      const res = check(method, messages, known);
      const where = `${method} (${known ? "shapes known" : "shapes from the reply"}): ${hows.join("; ")}; stream op ${op}`;
      if (res instanceof Error) {
        if (!(res instanceof MalformedReplyError) || !isMalformedReply(res)) {
          failures.push(`${res.name}: ${res.message} ← ${where}`);
          continue;
        }
        expect(res.message.startsWith(`worker w-fuzz: malformed ${method} reply: `)).toBe(true);
        expect(res.field.length, where).toBeGreaterThan(0);
        expect(res.message.length, where).toBeLessThan(2048);
        fields.add(`${res.field.replace(/\d+/g, "N")}: ${res.detail.replace(/\d+/g, "N").slice(0, 80)}`);
        refused++;
      } else {
        const bad = wellFormed(method, res);
        if (bad) failures.push(`accepted with bad ${bad} ← ${where}`);
        accepted++;
      }
    }
    const ms = performance.now() - started;
    console.log(
      `reply fuzz: ${CASES} cases in ${ms.toFixed(0)} ms: ${refused} refused, ${accepted} accepted well-formed; ` +
        `${fields.size} distinct refusals:\n  ${[...fields].sort().join("\n  ")}`,
    );
    expect(failures.slice(0, 20)).toEqual([]);
    expect(refused).toBeGreaterThan(CASES / 2);
    recordFault({
      fault: `malformed replies into the coordinator's reply check (${CASES} cases)`,
      tried: CASES,
      survived: CASES - failures.length,
      bitIdentical: null,
      detectionMs: null,
      detail: `${refused} refused as MalformedReplyError (sender quarantined), ${accepted} well-formed`,
    });
  });

  // Found by probing what the fuzzer's numbers reach: with the step's shapes unknown (a step by version
  // only), a summary or an empty slice announced sizes no data backed, and the check allocated them.
  it.each([
    [
      "a summary announcing rank 2^32 − 1",
      "trainStep" as const,
      { rank: 2 ** 32 - 1, classes },
      "shard 0.rank: 4294967295, expected 1 … 8 (the parameters')",
    ],
    [
      "a summary announcing 2^32 − 1 classes",
      "trainStep" as const,
      { rank: r, classes: 2 ** 32 - 1 },
      // A head one 16 MiB message holds: 2^24 bytes / (4 bytes · (D + 1)) = 466033 classes.
      "shard 0.classes: 4294967295, expected 1 … 466033 (the head's)",
    ],
    [
      "an empty logits slice 2^40 classes wide",
      "evaluate" as const,
      undefined,
      "shard 0.logits: 1099511627776 classes announced by a slice of no rows",
    ],
  ])("refuses %s (shapes unknown) before allocating it", (_what, method, summary, message) => {
    const bytes =
      method === "trainStep"
        ? serializeTrainStepResponse({
            shardIndex: 0,
            summary: { count: 2, lossSum: 1, correct: 0, ...summary! },
            offset: 0,
            grads: encodeTensor(new Float32Array(4), [4]),
            align: new Uint8Array(0),
          })
        : Buffer.from(
            pb.EvaluateResponse.encode({
              shardIndex: 0,
              rowOffset: 0,
              logits: { dtype: 1, shape: [0, 2 ** 40], data: new Uint8Array(0) },
            }).finish(),
          );
    const err = check(method, [bytes], false);
    expect(err).toBeInstanceOf(MalformedReplyError);
    expect((err as Error).message).toBe(`worker w-fuzz: malformed ${method} reply: ${message}`);
  });

  it("refuses a reply whose bytes are not protobuf at all, by name", () => {
    const garbage = Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    const decoded = client.covariance.responseDeserialize(garbage);
    expect(decoded).toBeInstanceOf(UndecodableReply);
    const err = check("covariance", [garbage], true);
    expect(err).toBeInstanceOf(MalformedReplyError);
    expect((err as Error).message).toMatch(
      /^worker w-fuzz: malformed covariance reply: reply: cannot be decoded: /,
    );
  });
});
