/**
 * The /metrics endpoints of a coordinator and a worker, fed like a real run, scraped over HTTP and checked
 * by a real `promtool check metrics` (Prometheus' own linter: naming, units, suffixes, help texts).
 */
import { spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type MetricsServer, serveMetrics } from "../../common/metrics_server.js";
import type { WorkerClient } from "../../common/protocol.js";
import type { EventName, RunEvent } from "../../coordinator/events.js";
import { CoordinatorMetrics } from "../../coordinator/metrics.js";
import { WorkerMetrics } from "../../worker/metrics.js";
import { promtool } from "./ops_tools.js";

/** Feeds `text` to `promtool check metrics` on stdin; resolves with its exit code and output. */
function checkMetrics(text: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(promtool(), ["check", "metrics"], { stdio: ["pipe", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d) => {
      output += d;
    });
    child.stderr.on("data", (d) => {
      output += d;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, output }));
    child.stdin.end(text);
  });
}

function feedRun(m: CoordinatorMetrics, run: string): void {
  const ev = (event: EventName, fields: Record<string, unknown> = {}) =>
    m.eventSink({ time: new Date().toISOString(), run, event, ...fields } as RunEvent);
  ev("worker_joined", { worker: "10.0.0.1:50051", backend: "node-gpu", device: "GPU 0" });
  ev("worker_joined", { worker: "10.0.0.2:50051", backend: "node-gpu", device: "GPU 0" });
  ev("run_started", { seed: 0, tasks: 3, resumed_at_task: 0 });
  for (let task = 0; task < 3; task++) {
    ev("task_started", { task });
    for (const phase of ["COVARIANCE_PRE", "DESIGN", "TRAIN"]) ev("phase_started", { task, phase });
    m.observeAllReduce(28_311_552, 0.05, "covariance");
    m.observeLinalg("design", 1.5);
    for (let epoch = 0; epoch < 2; epoch++) {
      ev("epoch_started", { task, epoch, lr: 5e-4 });
      for (let step = 0; step < 4; step++) {
        m.observeStep(0.3 + step * 0.01, 2 - task * 0.2 - step * 0.05, 128);
        m.observeAllReduce(738_000, 0.004, "gradients");
      }
      ev("epoch_finished", {
        task,
        epoch,
        epochs: 2,
        lr: 5e-4,
        loss: 1.5,
        train_accuracy: 70,
        seconds: 1.2,
        images_per_second: 420,
        workers: 2,
      });
    }
    if (task === 1)
      ev("worker_failed", { worker: "10.0.0.2:50051", reason: "deadline exceeded", status: "failed" });
    for (const phase of ["COVARIANCE_POST", "DUALGPM", "EVAL", "CHECKPOINT"])
      ev("phase_started", { task, phase });
    m.observeLinalg("dualgpm", 2.5);
    m.setBasisWidths([12, 40, 400], ["remove", "remove", "retain"]);
    const row = Array.from({ length: task + 1 }, (_, s) => 90 - 5 * (task - s));
    ev("task_finished", { task, cil: 88 - task, with_task: 92 - task, accuracy_row: row });
    ev("checkpoint_written", { task, file: `checkpoints/task-0${task}.safetensors` });
  }
  ev("run_finished", { final_accuracy: 86, average_accuracy: 87, forgetting: 5, bwt: -5 });
}

let coordinator: MetricsServer;
let worker: MetricsServer;

beforeAll(async () => {
  const cm = new CoordinatorMetrics({ run: "3f2a9c1e-run" });
  cm.setInfo("wasm", "0.1.0");
  feedRun(cm, "3f2a9c1e-run");
  coordinator = await serveMetrics(cm.registry, 0, "127.0.0.1");

  const wm = new WorkerMetrics();
  wm.setInfo("node-gpu", "0.1.0");
  const client = wm.instrument({
    name: "fake",
    setup: async () => ({
      workerId: "w",
      protocolVersion: 1,
      weightsFingerprint: "f",
      backend: "cpu",
      device: "cpu",
    }),
    setTaskState: async () => {},
    covariance: async () => [],
    trainStep: async () => [],
    evaluate: async () => [],
    close: async () => {},
  } satisfies WorkerClient);
  const shards = [{ index: 0, split: "train" as const, samples: new Int32Array(16) }];
  await client.trainStep({ stateVersion: 1, params: { version: 1 }, shards });
  await client.covariance({ stateVersion: 1, shards });
  worker = await serveMetrics(wm.registry, 0, "127.0.0.1");
});

afterAll(async () => {
  await coordinator?.close();
  await worker?.close();
});

describe("metrics endpoints", () => {
  it("serve the coordinator's metrics, which promtool finds nothing wrong with", async () => {
    const res = await fetch(`http://127.0.0.1:${coordinator.port}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    for (const name of [
      'inflora_task_accuracy_ratio{run="3f2a9c1e-run",after_task="2",task="0",stage="final"} 0.8',
      "inflora_final_accuracy_ratio",
      "inflora_step_duration_seconds_bucket",
      "inflora_allreduce_bytes_total",
      "inflora_dualgpm_basis_width",
      "inflora_worker_failures_total",
      'inflora_info{role="coordinator",backend="wasm",version="0.1.0"} 1',
      "process_cpu_seconds_total",
      "nodejs_heap_size_used_bytes",
      "inflora_tfjs_tensors",
    ]) {
      expect(text).toContain(name);
    }
    const lint = await checkMetrics(text);
    expect(lint.output).toBe("");
    expect(lint.code).toBe(0);
  });

  it("serve the worker's metrics, which promtool finds nothing wrong with", async () => {
    const text = await (await fetch(`http://127.0.0.1:${worker.port}/metrics`)).text();
    expect(text).toContain('inflora_worker_images_total{kind="train"} 16');
    expect(text).toContain('inflora_info{role="worker",backend="node-gpu",version="0.1.0"} 1');
    const lint = await checkMetrics(text);
    expect(lint.output).toBe("");
    expect(lint.code).toBe(0);
  });

  it("answers only GET and HEAD on /metrics", async () => {
    const base = `http://127.0.0.1:${coordinator.port}`;
    expect((await fetch(`${base}/`)).status).toBe(404);
    expect((await fetch(`${base}/metrics/x`)).status).toBe(404);
    expect((await fetch(`${base}/metrics`, { method: "POST" })).status).toBe(405);
    const head = await fetch(`${base}/metrics`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");
    expect((await fetch(`${base}/metrics?x=1`)).status).toBe(200);
  });

  it("reports a port in use instead of crashing", async () => {
    const registry = new CoordinatorMetrics({ run: "x", processMetrics: false }).registry;
    await expect(serveMetrics(registry, coordinator.port, "127.0.0.1")).rejects.toThrow(
      /cannot serve metrics/,
    );
  });
});
