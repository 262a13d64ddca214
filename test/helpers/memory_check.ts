/**
 * Every step runs inside tf.tidy or disposes what it made: the tensor count is flat across 50 training
 * steps and across repeated covariance and evaluation passes; on a GPU backend so are the bytes it holds
 * in GPU buffers (tf.memory().numBytesInGPU, which webgpu reports). Used on the default backend by
 * tensor_memory.test.ts and on webgpu by webgpu.test.ts.
 */
import path from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { expect } from "vitest";
import { PROTOCOL_VERSION, type TrainParams } from "../../common/protocol.js";
import type { WorkerEngine } from "../../worker/engine.js";
import { fingerprintFile } from "../../worker/model/load_weights.js";
import { REFERENCE_DIR } from "./reference_compare.js";
import { randomArray } from "./tiny_vit.js";

const D = 48;
const depth = 3;
const r = 4;

/** GPU buffer bytes where the backend reports them (webgpu, tensorflow with CUDA), else undefined. */
export function gpuBytes(): number | undefined {
  return (tf.memory() as tf.MemoryInfo & { numBytesInGPU?: number }).numBytesInGPU;
}

/** `shardsPerStep`: 2 micro-shards of 4 images per step (1 on slow software GPUs). */
export async function expectFlatMemory(engine: WorkerEngine, opts: { shardsPerStep: 1 | 2 }): Promise<void> {
  const weights = path.join(REFERENCE_DIR, "tiny_vit.safetensors");
  await engine.setup({
    runId: "memory-test",
    protocolVersion: PROTOCOL_VERSION,
    weightsPath: weights,
    weightsFingerprint: await fingerprintFile(weights),
    model: { imgSize: 32, patchSize: 4, inChans: 3, embedDim: D, depth, numHeads: 3, mlpHidden: 192 },
    data: {
      dataset: "cifar100",
      dataPath: path.join(REFERENCE_DIR, "cifar_bin"),
      imageSize: 32,
      threads: 0,
    },
  });
  const B = Array.from({ length: depth }, (_, i) => randomArray(r * D, i, 0.1));
  const finished = [
    {
      task: 0,
      rank: r,
      Bk: B,
      Bv: B,
      Ak: B.map((_, i) => randomArray(D * r, 10 + i, 0.1)),
      Av: B.map((_, i) => randomArray(D * r, 20 + i, 0.1)),
    },
  ];
  await engine.setTaskState({ version: 1, task: 1, finished, currentB: { rank: r, B }, heads: [] });
  const samples = Int32Array.from({ length: 8 }, (_, i) => i);
  const shards = [
    {
      index: 0,
      split: "train" as const,
      samples: samples.subarray(0, 4),
      targets: Int32Array.from([0, 1, 2, 3]),
    },
    {
      index: 1,
      split: "train" as const,
      samples: samples.subarray(4),
      targets: Int32Array.from([3, 2, 1, 0]),
    },
  ];
  const params = (version: number): TrainParams => ({
    version,
    Ak: B.map((_, i) => randomArray(D * r, 100 * version + i, 0.01)),
    Av: B.map((_, i) => randomArray(D * r, 100 * version + 50 + i, 0.01)),
    head: { classes: 4, weight: randomArray(4 * D, version, 0.1), bias: new Float32Array(4) },
  });
  const stepShards = shards.slice(0, opts.shardsPerStep);
  let afterFirst = 0;
  let gpuAfterFirst: number | undefined;
  for (let step = 1; step <= 50; step++) {
    const out = await engine.trainStep({ stateVersion: 1, params: params(step), shards: stepShards });
    expect(out.map((o) => o.index)).toEqual(stepShards.map((s) => s.index));
    if (step === 1) {
      afterFirst = tf.memory().numTensors;
      gpuAfterFirst = gpuBytes();
    }
  }
  expect(tf.memory().numTensors).toBe(afterFirst);
  expect(gpuBytes(), "bytes in GPU buffers after step 50 vs step 1").toBe(gpuAfterFirst);
  await engine.setTaskState({
    version: 2,
    task: 1,
    finished,
    heads: [{ classes: 4, weight: randomArray(4 * D, 7), bias: new Float32Array(4) }],
  });
  await engine.covariance({ stateVersion: 2, shards: [{ index: 0, split: "train", samples }] });
  await engine.evaluate({ stateVersion: 2, shards: [{ index: 0, split: "test", samples }] });
  const settled = tf.memory().numTensors;
  const gpuSettled = gpuBytes();
  for (let k = 0; k < 5; k++) {
    await engine.covariance({ stateVersion: 2, shards: [{ index: 0, split: "train", samples }] });
    await engine.evaluate({ stateVersion: 2, shards: [{ index: 0, split: "test", samples }] });
  }
  expect(tf.memory().numTensors).toBe(settled);
  expect(gpuBytes(), "bytes in GPU buffers after five more passes").toBe(gpuSettled);
}
