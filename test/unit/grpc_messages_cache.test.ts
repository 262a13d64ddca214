/**
 * TrainStep parameter messages are encoded once per parameter object and version and shared by every
 * worker's stream; headers stay per worker. The bytes must decode to exactly the parameters sent.
 */
import { describe, expect, it } from "vitest";
import type { TrainStepRequest } from "../../common/protocol.js";
import { serializeTrainStepRequest, trainStepParts } from "../../coordinator/transport/grpc_messages.js";
import * as pb from "../../proto/gen/inflora/v1/compute.js";

const D = 4;
const rank = 2;

function request(version: number, fill: number, shard: number): TrainStepRequest {
  return {
    stateVersion: 1,
    params: {
      version,
      Ak: [Float32Array.from({ length: D * rank }, (_, i) => fill + i)],
      Av: [Float32Array.from({ length: D * rank }, (_, i) => -fill - i)],
      head: { classes: 1, weight: new Float32Array(D).fill(fill), bias: Float32Array.of(fill) },
    },
    shards: [{ index: shard, split: "train", samples: Int32Array.of(shard), targets: Int32Array.of(0) }],
  };
}

describe("TrainStep parameter messages", () => {
  it("are encoded once and shared across workers; headers are not", () => {
    const a = request(7, 1, 0);
    const b = { ...a, shards: request(7, 1, 1).shards };
    const pa = [...trainStepParts(a, "run", D)];
    const pb2 = [...trainStepParts(b, "run", D)];
    expect(pa.length).toBe(3); // header, one block, head
    expect(pa[0]).not.toBe(pb2[0]);
    expect(pa[1]).toBe(pb2[1]);
    expect(serializeTrainStepRequest(pa[1])).toBe(serializeTrainStepRequest(pb2[1]));
    const decoded = pb.TrainStepRequest.decode(serializeTrainStepRequest(pa[1]));
    expect(decoded.part?.$case).toBe("params");
    const value = (decoded.part as { value: pb.ParamBlock }).value;
    expect(new Float32Array(new Uint8Array(value.aK!.data).buffer)).toEqual(
      (a.params as { Ak: Float32Array[] }).Ak[0],
    );
    expect(pb.TrainStepRequest.decode(serializeTrainStepRequest(pa[0])).part?.$case).toBe("header");
  });

  it("are re-encoded when the same object carries a new version", () => {
    const a = request(7, 1, 0);
    const first = [...trainStepParts(a, "run", D)][1];
    const p = a.params as { version: number; Ak: Float32Array[] };
    p.version = 8;
    p.Ak[0].fill(42);
    const second = [...trainStepParts(a, "run", D)][1];
    expect(second).not.toBe(first);
    const value = (
      pb.TrainStepRequest.decode(serializeTrainStepRequest(second)).part as { value: pb.ParamBlock }
    ).value;
    expect(Array.from(new Float32Array(new Uint8Array(value.aK!.data).buffer))).toEqual(
      new Array(D * rank).fill(42),
    );
  });
});
