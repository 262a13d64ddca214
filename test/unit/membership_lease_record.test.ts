import { describe, expect, it } from "vitest";
import { checkLeaseMs, checkWorkerId, decodeLease } from "../../common/membership/lease_bucket.js";

describe("worker lease records", () => {
  it("decode what a worker writes, stringifying capabilities and bounding the lease", () => {
    const r = decodeLease(
      "w1",
      JSON.stringify({
        id: "ignored-the-key-wins",
        address: "10.0.0.5:7000",
        capabilities: { backend: "tfjs-node-gpu", gpus: 1 },
        leaseMs: 5,
        incarnation: "abc",
        heartbeat: "2026-01-01T00:00:00.000Z",
      }),
    );
    expect(r).toEqual({
      id: "w1",
      address: "10.0.0.5:7000",
      capabilities: { backend: "tfjs-node-gpu", gpus: "1" },
      leaseMs: 100,
      incarnation: "abc",
      heartbeat: "2026-01-01T00:00:00.000Z",
    });
    expect(decodeLease("w", JSON.stringify({ address: "h:1" })).leaseMs).toBeNaN();
  });

  it("refuse entries that are not leases", () => {
    expect(() => decodeLease("w", "not json")).toThrow();
    expect(() => decodeLease("w", "42")).toThrow(/not a JSON object/);
    expect(() => decodeLease("w", JSON.stringify({ capabilities: {} }))).toThrow(/no address/);
  });

  it("check worker ids are usable as KV keys and lease times are sane", () => {
    expect(checkWorkerId("gpu-node-3.pod_1/0=a")).toBe("gpu-node-3.pod_1/0=a");
    for (const bad of ["", "a b", ".a", "a.", "a*", "a>", "é"]) {
      expect(() => checkWorkerId(bad), bad).toThrow(/cannot be a NATS KV key/);
    }
    expect(checkLeaseMs(10_000)).toBe(10_000);
    expect(() => checkLeaseMs(50)).toThrow("lease time 50 ms is outside 100..600000 ms");
    expect(() => checkLeaseMs(Number.NaN)).toThrow(/outside/);
  });
});
