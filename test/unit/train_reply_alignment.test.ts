/**
 * TrainStep replies are laid out so the coordinator reads gradients in place: whatever the shard index,
 * sizes and slice, the gradient bytes start 4-byte aligned where grpc-js holds a received message (5 bytes
 * of framing into a buffer of its own), the padding decodes as nothing, and a reader views the floats
 * without copying — or copies, with the same values, when the bytes are not aligned.
 */
import { describe, expect, it } from "vitest";
import type { TrainStepResult } from "../../common/protocol.js";
import { encodeTensor, viewF32 } from "../../common/tensor_codec.js";
import { TrainStepResponse } from "../../proto/gen/inflora/v1/compute.js";
import { serializeTrainStepResponse, trainMessages } from "../../worker/grpc_service.js";

const values = (n: number, seed: number) =>
  Float32Array.from({ length: n }, (_, i) => Math.cos(seed * 7 + i));

function result(index: number, D: number, depth: number, r: number, classes: number): TrainStepResult {
  return {
    index,
    count: 3,
    lossSum: 2.5,
    correct: 1,
    gradAk: Array.from({ length: depth }, (_, b) => values(D * r, b)),
    gradAv: Array.from({ length: depth }, (_, b) => values(D * r, 50 + b)),
    gradHeadW: values(classes * D, 98),
    gradHeadB: values(classes, 99),
  };
}

/** What grpc-js hands its deserializer: the message 5 bytes into a fresh buffer. */
function received(bytes: Buffer): Buffer {
  const framed = Buffer.alloc(5 + bytes.length);
  bytes.copy(framed, 5);
  return framed.subarray(5);
}

describe("TrainStep reply alignment", () => {
  it("puts the gradient bytes 4-byte aligned for every shard index, size and slice, and round-trips", () => {
    let messages = 0;
    for (const [D, depth, r, classes] of [
      [8, 2, 2, 3],
      [48, 2, 4, 10],
      [768, 12, 10, 10],
      [768, 12, 10, 345],
      [384, 12, 7, 1],
    ]) {
      for (const index of [0, 1, 127, 128, 300, 16_383, 16_384]) {
        // Small models also in 4 KiB slices (many messages, each aligned on its own).
        const sliceBytes = index % 2 === 1 && D < 100 ? 4096 : 4 << 20;
        const r0 = result(index, D, depth, r, classes);
        const parts = [...r0.gradAk, ...r0.gradAv, r0.gradHeadW, r0.gradHeadB];
        const flat = new Float32Array(parts.reduce((n, a) => n + a.length, 0));
        let at = 0;
        for (const a of parts) {
          flat.set(a, at);
          at += a.length;
        }
        const got = new Float32Array(flat.length);
        let summaries = 0;
        for (const msg of trainMessages([r0], { D, depth }, sliceBytes)) {
          const decoded = TrainStepResponse.decode(received(serializeTrainStepResponse(msg)));
          const data = decoded.grads!.data;
          expect(data.byteOffset % 4, `D ${D} shard ${index} offset ${decoded.offset}`).toBe(0);
          expect(decoded.shardIndex).toBe(index);
          if (decoded.summary) {
            summaries++;
            expect(decoded.summary).toEqual({ count: 3, lossSum: 2.5, correct: 1, rank: r, classes });
          }
          const view = viewF32(decoded.grads, { field: "grads" }).data;
          expect(view.buffer).toBe(data.buffer);
          got.set(view, decoded.offset);
          messages++;
        }
        expect(summaries).toBe(1);
        expect(Buffer.from(got.buffer).equals(Buffer.from(flat.buffer))).toBe(true);
      }
    }
    expect(messages).toBeGreaterThan(35);
  });

  it("a reader copies unaligned bytes, with the same values", () => {
    const v = values(100, 1);
    const bytes = Buffer.alloc(4 * 100 + 1);
    Buffer.from(v.buffer).copy(bytes, 1);
    const t = { ...encodeTensor(v, [100]), data: bytes.subarray(1) };
    const copy = viewF32(t, { field: "x" }).data;
    expect(copy.buffer).not.toBe(bytes.buffer);
    expect(copy).toEqual(v);
  });
});
