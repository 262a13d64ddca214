/**
 * What crosses between the main thread and a transport thread: errors keep the class and fields the
 * worker pool decides by, and only buffers nobody else uses are moved (never Node's shared Buffer pool).
 */
import { availableParallelism } from "node:os";
import { MessageChannel } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { isMalformedReply, MALFORMED_REPLY, StaleVersionError } from "../../common/protocol.js";
import { MalformedReplyError, WorkerRpcError } from "../../coordinator/transport/grpc_client.js";
import {
  deserializeError,
  serializeError,
  transferablesOf,
} from "../../coordinator/transport/thread_messages.js";
import { defaultTransportThreads } from "../../coordinator/transport/threaded_client.js";

const roundTrip = (err: unknown) => deserializeError(structuredClone(serializeError(err)));

describe("transport thread messages", () => {
  it("errors keep their class, fields and message across the thread boundary", () => {
    const malformed = roundTrip(
      new MalformedReplyError("w1", "trainStep", "shard 2.grad_Ak[0]", "element 3 is NaN"),
    );
    expect(malformed).toBeInstanceOf(MalformedReplyError);
    expect(malformed).toMatchObject({ worker: "w1", method: "trainStep", field: "shard 2.grad_Ak[0]" });
    expect(malformed.message).toBe(
      "worker w1: malformed trainStep reply: shard 2.grad_Ak[0]: element 3 is NaN",
    );

    const rpc = roundTrip(new WorkerRpcError("w2", "setup", 9, "refused", "setup-refused"));
    expect(rpc).toBeInstanceOf(WorkerRpcError);
    expect(rpc).toMatchObject({
      worker: "w2",
      method: "setup",
      code: 9,
      details: "refused",
      reason: "setup-refused",
    });

    const stale = roundTrip(new StaleVersionError("state", 12));
    expect(stale).toBeInstanceOf(StaleVersionError);
    expect(stale).toMatchObject({ what: "state", wanted: 12 });

    const other = roundTrip(Object.assign(new Error("boom"), { name: "NoWorkersError" }));
    expect(other).toMatchObject({ name: "NoWorkersError", message: "boom" });
    expect(roundTrip("a string").message).toBe("a string");
  });

  it("the malformed-reply tag crosses with any error class, and only the tagged ones carry it", () => {
    const malformed = roundTrip(new MalformedReplyError("w1", "evaluate", "shard 0.logits", "short"));
    expect(isMalformedReply(malformed)).toBe(true);
    // An error class the thread messages do not know, tagged by its transport: the tag survives.
    const tagged = roundTrip(
      Object.assign(new Error("odd reply"), { name: "OddError", tag: MALFORMED_REPLY }),
    );
    expect(tagged).toMatchObject({ name: "OddError", message: "odd reply" });
    expect(isMalformedReply(tagged)).toBe(true);
    // A name alone means nothing: only the tag quarantines.
    expect(isMalformedReply(roundTrip(Object.assign(new Error("x"), { name: "MalformedReplyError" })))).toBe(
      false,
    );
    expect(isMalformedReply(roundTrip(new WorkerRpcError("w2", "setup", 14, "down")))).toBe(false);
  });

  it("moves large buffers once each, never small arrays", () => {
    // Large: at least half of Buffer.poolSize (its size differs between Node lines).
    const big = new Float32Array(Buffer.poolSize);
    const list = transferablesOf({
      a: [big.subarray(0, 10), big.subarray(10)],
      nested: { c: new Float32Array(3) },
      n: 4,
    });
    expect(list.length).toBe(1);
    expect(list[0]).toBe(big.buffer);
  });

  it("never lists a Buffer cut from Node's shared pool: moving a result leaves later Buffers working", async () => {
    // The largest Buffer Node still cuts from its pool, made as gRPC makes a message (Buffer.concat), and
    // a small one; each shows it is pooled by an ArrayBuffer longer than itself.
    const largestPooled = (Buffer.poolSize >>> 1) - 1;
    const pooled = [
      Buffer.allocUnsafe(64).fill(7),
      Buffer.concat([Buffer.from([1, 2, 3, 4, 5]), Buffer.alloc(largestPooled - 5, 9)]),
    ];
    expect(pooled[1].length).toBe(largestPooled);
    for (const b of pooled) expect(b.buffer.byteLength).toBeGreaterThan(b.length);
    // A message too large for the pool, its gradients read in place (as viewF32 does).
    const message = Buffer.concat([Buffer.alloc(8), Buffer.alloc(4 * Buffer.poolSize, 1)]);
    expect(message.buffer.byteLength).toBe(message.length);
    const grads = new Float32Array(message.buffer, message.byteOffset + 8, Buffer.poolSize);
    const inPool = (b: Buffer, floats: number) => new Float32Array(b.buffer, b.byteOffset + 8, floats);
    const value = { grads, small: inPool(pooled[0], 8), edge: inPool(pooled[1], (largestPooled - 8) >> 2) };

    const list = transferablesOf(value);
    expect(list.length).toBe(1);
    expect(list[0]).toBe(message.buffer);

    const { port1, port2 } = new MessageChannel();
    try {
      const received = new Promise<typeof value>((resolve) => port2.once("message", resolve));
      port1.postMessage(value, list);
      const got = await received;
      expect(got.grads.length).toBe(Buffer.poolSize);
      expect(got.edge.every((x) => Number.isFinite(x))).toBe(true);
      expect(message.buffer.byteLength).toBe(0);
    } finally {
      port1.close();
    }
    // The pool stayed here, attached: the pooled Buffers keep their bytes and the next ones are cut.
    expect([...pooled[0]]).toEqual(new Array(64).fill(7));
    expect([...pooled[1].subarray(0, 6)]).toEqual([1, 2, 3, 4, 5, 9]);
    expect(Buffer.from("after the move").toString()).toBe("after the move");
  });

  it("transport threads: cores − 2 (at most 4) unless INFLORA_TRANSPORT_THREADS says, which must be a count", () => {
    const cores = availableParallelism();
    expect(defaultTransportThreads({})).toBe(Math.min(4, Math.max(0, cores - 2)));
    expect(defaultTransportThreads({ INFLORA_TRANSPORT_THREADS: "3" })).toBe(3);
    expect(defaultTransportThreads({ INFLORA_TRANSPORT_THREADS: "0" })).toBe(0);
    expect(defaultTransportThreads({ INFLORA_TRANSPORT_THREADS: " " })).toBe(
      Math.min(4, Math.max(0, cores - 2)),
    );
    for (const bad of ["-1", "two", "1.5"]) {
      expect(() => defaultTransportThreads({ INFLORA_TRANSPORT_THREADS: bad })).toThrow(
        expect.objectContaining({
          name: "ConfigError",
          message: expect.stringContaining(`=${bad}: expected a whole number`),
        }),
      );
    }
  });
});
