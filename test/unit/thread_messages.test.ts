/**
 * What crosses between the main thread and a transport thread: errors keep the class and fields the
 * worker pool decides by, and only buffers nobody else uses are moved (never Node's shared Buffer pool).
 */
import { availableParallelism } from "node:os";
import { describe, expect, it } from "vitest";
import { StaleVersionError } from "../../common/protocol.js";
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

  it("moves large buffers once each, never the shared pool nor small arrays", () => {
    const big = new Float32Array(4096);
    const pooled = Buffer.allocUnsafe(64);
    expect(pooled.buffer.byteLength).toBe(Buffer.poolSize);
    const pooledView = new Float32Array(pooled.buffer, pooled.byteOffset, 16);
    const list = transferablesOf({
      a: [big.subarray(0, 10), big.subarray(10)],
      nested: { b: pooledView, c: new Float32Array(3) },
      n: 4,
    });
    expect(list).toEqual([big.buffer]);
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
