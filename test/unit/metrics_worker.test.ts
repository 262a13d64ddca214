/** WorkerMetrics: the instrumented WorkerClient counts and times every call. */
import { describe, expect, it } from "vitest";
import { StaleVersionError, type WorkerClient } from "../../common/protocol.js";
import { WorkerMetrics } from "../../worker/metrics.js";

const shard = (n: number) => ({ index: 0, split: "train" as const, samples: new Int32Array(n) });

function fakeWorker(): WorkerClient {
  return {
    name: "fake",
    setup: async () => ({
      workerId: "w",
      protocolVersion: 1,
      weightsFingerprint: "x",
      backend: "cpu",
      device: "cpu",
    }),
    setTaskState: async () => {},
    covariance: async () => [],
    trainStep: async (req) => {
      if (req.stateVersion === 0) throw new StaleVersionError("state", 0);
      if (req.stateVersion < 0) throw new Error("boom");
      return [];
    },
    evaluate: async () => [],
    close: async () => {},
  };
}

describe("WorkerMetrics", () => {
  it("counts requests by RPC and outcome, their duration and the images processed", async () => {
    const m = new WorkerMetrics({ processMetrics: false });
    const w = m.instrument(fakeWorker());
    await w.trainStep({ stateVersion: 1, params: { version: 1 }, shards: [shard(8), shard(8)] });
    await expect(
      w.trainStep({ stateVersion: 0, params: { version: 1 }, shards: [shard(8)] }),
    ).rejects.toThrow(StaleVersionError);
    await expect(
      w.trainStep({ stateVersion: -1, params: { version: 1 }, shards: [shard(8)] }),
    ).rejects.toThrow("boom");
    await w.covariance({ stateVersion: 1, shards: [shard(5)] });
    await w.evaluate({ stateVersion: 1, shards: [shard(3)] });
    m.setInfo("wasm", "0.1.0");
    const text = await m.registry.metrics();
    expect(text).toContain('inflora_worker_requests_total{rpc="train_step",outcome="ok"} 1');
    expect(text).toContain('inflora_worker_requests_total{rpc="train_step",outcome="stale"} 1');
    expect(text).toContain('inflora_worker_requests_total{rpc="train_step",outcome="error"} 1');
    expect(text).toContain('inflora_worker_request_duration_seconds_count{rpc="train_step"} 3');
    expect(text).toContain('inflora_worker_images_total{kind="train"} 16');
    expect(text).toContain('inflora_worker_images_total{kind="covariance"} 5');
    expect(text).toContain('inflora_worker_images_total{kind="eval"} 3');
    expect(text).toContain("inflora_worker_inflight_requests 0");
    expect(text).toContain('inflora_info{role="worker",backend="wasm",version="0.1.0"} 1');
    // Series for RPCs not called yet exist from the start.
    expect(text).toContain('inflora_worker_requests_total{rpc="setup",outcome="ok"} 0');
  });

  it("names a webgpu worker's adapter in its one info series", async () => {
    const m = new WorkerMetrics({ processMetrics: false });
    m.setInfo("wasm", "0.1.0");
    m.setInfo("webgpu", "0.1.0", {
      vendor: "nvidia",
      architecture: "ampere",
      device: "",
      description: "NVIDIA A100-SXM4-80GB",
      software: false,
      gpu: 1,
    });
    const text = await m.registry.metrics();
    expect(text).toContain(
      'inflora_info{role="worker",backend="webgpu",version="0.1.0",adapter_vendor="nvidia",adapter_architecture="ampere",adapter_description="NVIDIA A100-SXM4-80GB",gpu="1"} 1',
    );
    expect(text.match(/^inflora_info\{/gm)).toHaveLength(1);
  });

  it("reports tfjs memory once tfjs is loaded in the process", async () => {
    const tf = await import("@tensorflow/tfjs-core");
    await import("@tensorflow/tfjs-backend-cpu");
    await tf.setBackend("cpu");
    const m = new WorkerMetrics({ processMetrics: false });
    const t = tf.zeros([256]);
    const text = await m.registry.metrics();
    t.dispose();
    const tensors = Number(/^inflora_tfjs_tensors (\d+)/m.exec(text)?.[1]);
    const bytes = Number(/^inflora_tfjs_memory_bytes (\d+)/m.exec(text)?.[1]);
    expect(tensors).toBeGreaterThanOrEqual(1);
    expect(bytes).toBeGreaterThanOrEqual(1024);
  });
});
