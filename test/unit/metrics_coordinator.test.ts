/** CoordinatorMetrics: what the run's events and the observe calls turn into. */
import { describe, expect, it } from "vitest";
import type { EventName, RunEvent } from "../../coordinator/events.js";
import { CoordinatorMetrics, covarianceBytes, trainStepBytes } from "../../coordinator/metrics.js";

function feeder(m: CoordinatorMetrics, run = "run-a") {
  return (event: EventName, fields: Record<string, unknown> = {}) =>
    m.eventSink({ time: new Date().toISOString(), run, event, ...fields } as RunEvent);
}

async function value(
  m: CoordinatorMetrics,
  name: string,
  labels: Record<string, string> = {},
): Promise<number | undefined> {
  const metric = m.registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  const hit = values.find((v) => Object.entries(labels).every(([k, x]) => String(v.labels[k]) === x));
  return hit?.value;
}

describe("CoordinatorMetrics", () => {
  it("derives the accuracy matrix, A_t curve, average, forgetting and BWT from task_finished events", async () => {
    const m = new CoordinatorMetrics({ run: "run-a", processMetrics: false });
    const ev = feeder(m);
    ev("run_started", { seed: 0, tasks: 3, resumed_at_task: 0 });
    ev("task_finished", { task: 0, cil: 90, with_task: 90, accuracy_row: [90] });
    ev("task_finished", { task: 1, cil: 80, with_task: 86, accuracy_row: [70, 90] });
    expect(await value(m, "inflora_task_accuracy_ratio", { after_task: "1", task: "0" })).toBeCloseTo(0.7);
    expect(await value(m, "inflora_task_accuracy_ratio", { after_task: "0", task: "0" })).toBeCloseTo(0.9);
    expect(await value(m, "inflora_incremental_accuracy_ratio", { after_task: "1" })).toBeCloseTo(0.8);
    expect(await value(m, "inflora_task_aware_accuracy_ratio", { after_task: "1" })).toBeCloseTo(0.86);
    expect(await value(m, "inflora_average_accuracy_ratio")).toBeCloseTo(0.85);
    expect(await value(m, "inflora_forgetting_ratio")).toBeCloseTo(0.2);
    expect(await value(m, "inflora_bwt_ratio")).toBeCloseTo(-0.2);
    expect(await value(m, "inflora_task_forgetting_ratio", { task: "0" })).toBeCloseTo(0.2);
    expect(await value(m, "inflora_task_accuracy_current_ratio", { task: "1" })).toBeCloseTo(0.9);
    expect(await value(m, "inflora_tasks_completed")).toBe(2);
    expect(await value(m, "inflora_run_progress_ratio")).toBeCloseTo(2 / 3);
    expect(await value(m, "inflora_final_accuracy_ratio")).toBeUndefined();

    ev("task_finished", { task: 2, cil: 75, with_task: 85, accuracy_row: [72, 80, 88] });
    ev("run_finished", {
      final_accuracy: 75,
      average_accuracy: 81.67,
      forgetting: 14,
      bwt: -14,
      curve: {},
      accuracy_matrix: [],
    });
    expect(await value(m, "inflora_final_accuracy_ratio")).toBeCloseTo(0.75);
    expect(await value(m, "inflora_average_accuracy_ratio")).toBeCloseTo(0.8167);
    expect(await value(m, "inflora_run_status", { status: "finished" })).toBe(1);
    expect(await value(m, "inflora_run_status", { status: "running" })).toBe(0);
    expect(await value(m, "inflora_run_progress_ratio")).toBe(1);
  });

  it("tracks task, epoch, phase, loss, throughput and learning rate", async () => {
    const m = new CoordinatorMetrics({ run: "run-a", processMetrics: false });
    const ev = feeder(m);
    ev("run_started", { seed: 0, tasks: 10, resumed_at_task: 0 });
    ev("task_started", { task: 3 });
    ev("phase_started", { task: 3, phase: "TRAIN" });
    ev("epoch_started", { task: 3, epoch: 4, lr: 0.0005 });
    ev("epoch_finished", {
      task: 3,
      epoch: 4,
      epochs: 50,
      lr: 0.0005,
      loss: 0.42,
      train_accuracy: 91.5,
      seconds: 30,
      images_per_second: 800,
      workers: 8,
    });
    expect(await value(m, "inflora_current_task")).toBe(3);
    expect(await value(m, "inflora_current_epoch")).toBe(4);
    expect(await value(m, "inflora_task_epochs")).toBe(50);
    expect(await value(m, "inflora_phase", { phase: "TRAIN" })).toBe(1);
    expect(await value(m, "inflora_phase", { phase: "EVAL" })).toBe(0);
    expect(await value(m, "inflora_epoch_train_loss")).toBeCloseTo(0.42);
    expect(await value(m, "inflora_epoch_train_accuracy_ratio")).toBeCloseTo(0.915);
    expect(await value(m, "inflora_train_images_per_second")).toBe(800);
    expect(await value(m, "inflora_learning_rate")).toBe(0.0005);
    expect(await value(m, "inflora_workers_up")).toBe(8);
    expect(await value(m, "inflora_run_progress_ratio")).toBeCloseTo((3 + 5 / 50) / 10);
    expect(await value(m, "inflora_events_total", { event: "epoch_finished" })).toBe(1);
  });

  it("counts steps, non-finite losses, all-reduce bytes and linear algebra time", async () => {
    const m = new CoordinatorMetrics({ run: "run-a", processMetrics: false });
    m.observeStep(0.25, 2.5, 128);
    m.observeStep(0.5, Number.NaN, 128);
    m.observeAllReduce(1000, 0.001, "gradients");
    m.observeAllReduce(4000, 0.01, "covariance");
    m.observeLinalg("dualgpm", 3);
    expect(await value(m, "inflora_steps_total")).toBe(2);
    expect(await value(m, "inflora_train_images_total")).toBe(256);
    expect(await value(m, "inflora_nonfinite_losses_total")).toBe(1);
    expect(Number.isNaN(await value(m, "inflora_train_loss"))).toBe(true);
    expect(await value(m, "inflora_allreduce_bytes_total", { kind: "covariance" })).toBe(4000);
    const text = await m.registry.metrics();
    expect(text).toContain('inflora_step_duration_seconds_count{run="run-a"} 2');
    expect(text).toContain('inflora_linalg_duration_seconds_sum{run="run-a",kind="dualgpm"} 3');
    expect(await value(m, "inflora_last_progress_timestamp_seconds")).toBeGreaterThan(Date.now() / 1000 - 60);
  });

  it("keeps one basis-width series per layer when a layer turns from remove to retain", async () => {
    const m = new CoordinatorMetrics({ run: "run-a", processMetrics: false });
    m.setBasisWidths([10, 300], ["remove", "remove"]);
    m.setBasisWidths([20, 400], ["remove", "retain"]);
    const text = await m.registry.metrics();
    expect(text).toContain('inflora_dualgpm_basis_width{run="run-a",layer="1",type="retain"} 400');
    expect(text).not.toContain('layer="1",type="remove"');
    expect(text).toContain('inflora_dualgpm_basis_width{run="run-a",layer="0",type="remove"} 20');
  });

  it("follows worker joins, failures and departures", async () => {
    const m = new CoordinatorMetrics({ run: "run-a", processMetrics: false });
    const ev = feeder(m);
    ev("worker_joined", { worker: "w0" });
    ev("worker_joined", { worker: "w1" });
    ev("worker_failed", { worker: "w1", reason: "deadline" });
    ev("worker_joined", { worker: "w1" });
    ev("worker_left", { worker: "w0", reason: "lease lost" });
    expect(await value(m, "inflora_workers_up")).toBe(1);
    expect(await value(m, "inflora_worker_joins_total")).toBe(3);
    expect(await value(m, "inflora_worker_failures_total")).toBe(1);
    expect(await value(m, "inflora_worker_departures_total")).toBe(1);
    m.setWorkersUp(4);
    expect(await value(m, "inflora_workers_up")).toBe(4);
  });

  it("counts re-issued blocks and which copy of each answered first", async () => {
    const m = new CoordinatorMetrics({ run: "run-a", processMetrics: false });
    const ev = feeder(m);
    ev("run_started", { seed: 0, tasks: 1 });
    expect(await value(m, "inflora_shard_reissues_total")).toBe(0);
    expect(await value(m, "inflora_reissue_wins_total", { winner: "copy" })).toBe(0);
    ev("shards_reissued", { worker: "w1", late_worker: "w0", shards: [0], late_ms: 40 });
    ev("shards_reissued", { worker: "w2", late_worker: "w0", shards: [1], late_ms: 40 });
    ev("reissue_settled", { worker: "w1", late_worker: "w0", winner: "copy" });
    ev("reissue_settled", { worker: "w2", late_worker: "w0", winner: "original" });
    ev("reissue_settled", { worker: "w2", late_worker: "w0", winner: "copy" });
    expect(await value(m, "inflora_shard_reissues_total")).toBe(2);
    expect(await value(m, "inflora_reissue_wins_total", { winner: "copy" })).toBe(2);
    expect(await value(m, "inflora_reissue_wins_total", { winner: "original" })).toBe(1);
  });

  it("re-exports the accuracies of a resumed run from metrics.json", async () => {
    const m = new CoordinatorMetrics({ run: "run-a", processMetrics: false });
    m.restoreAccuracy({ curve: { cil: [90, 80], with_task: [90, 86] }, accuracy_matrix: [[90], [70, 90]] });
    feeder(m)("task_finished", { task: 2, cil: 75, with_task: 85, accuracy_row: [72, 80, 88] });
    expect(await value(m, "inflora_task_accuracy_ratio", { after_task: "1", task: "0" })).toBeCloseTo(0.7);
    expect(await value(m, "inflora_average_accuracy_ratio")).toBeCloseTo((90 + 80 + 75) / 300);
  });

  it("labels accuracies by stage: final for every method, before_alignment where the method aligns", async () => {
    const m = new CoordinatorMetrics({ run: "run-a", processMetrics: false });
    const ev = feeder(m);
    ev("run_started", { seed: 0, tasks: 2, resumed_at_task: 0 });
    const before0 = { cil: 90, with_task: 90, accuracy_row: [90] };
    ev("task_finished", { task: 0, cil: 90, with_task: 90, accuracy_row: [90], before_alignment: before0 });
    const before1 = { cil: 60, with_task: 85, accuracy_row: [40, 80] };
    ev("task_finished", {
      task: 1,
      cil: 80,
      with_task: 86,
      accuracy_row: [70, 90],
      before_alignment: before1,
    });
    const at = (name: string, labels: Record<string, string>) =>
      Promise.all(["final", "before_alignment"].map((stage) => value(m, name, { ...labels, stage })));
    expect(await at("inflora_task_accuracy_ratio", { after_task: "1", task: "0" })).toEqual([0.7, 0.4]);
    expect(await at("inflora_incremental_accuracy_ratio", { after_task: "1" })).toEqual([0.8, 0.6]);
    expect(await at("inflora_task_forgetting_ratio", { task: "0" })).toEqual([0.2, 0.5]);
    ev("run_finished", {
      final_accuracy: 80,
      average_accuracy: 85,
      forgetting: 20,
      bwt: -20,
      before_alignment: { final_accuracy: 60, average_accuracy: 75, forgetting: 50, bwt: -50 },
    });
    expect(await at("inflora_final_accuracy_ratio", {})).toEqual([0.8, 0.6]);
    expect(await at("inflora_average_accuracy_ratio", {})).toEqual([0.85, 0.75]);

    const resumed = new CoordinatorMetrics({ run: "run-b", processMetrics: false });
    resumed.restoreAccuracy({
      curve: { cil: [90, 80], with_task: [90, 86] },
      accuracy_matrix: [[90], [70, 90]],
      before_alignment: {
        curve: { cil: [90, 60], with_task: [90, 85] },
        accuracy_matrix: [[90], [40, 80]],
        final_accuracy: 60,
        average_accuracy: 75,
        forgetting: 50,
        bwt: -50,
      },
    });
    const labels = { after_task: "1", task: "0", stage: "before_alignment" };
    expect(await value(resumed, "inflora_task_accuracy_ratio", labels)).toBeCloseTo(0.4);
  });

  it("labels each run of a multi-seed process separately and sets the info metric", async () => {
    const m = new CoordinatorMetrics({ run: "seed-0-run", processMetrics: false });
    feeder(m, "seed-0-run")("task_finished", { task: 0, cil: 50, with_task: 50, accuracy_row: [50] });
    feeder(m, "seed-1-run")("run_started", { seed: 1, tasks: 1 });
    m.observeStep(0.1, 1, 8);
    m.setInfo("node-gpu", "1.2.3");
    const text = await m.registry.metrics();
    expect(text).toContain('inflora_steps_total{run="seed-1-run"} 1');
    expect(text).toContain(
      'inflora_task_accuracy_ratio{run="seed-0-run",after_task="0",task="0",stage="final"} 0.5',
    );
    expect(text).toContain('inflora_info{role="coordinator",backend="node-gpu",version="1.2.3"} 1');
    expect(text.match(/^inflora_info\{/gm)).toHaveLength(1);
  });

  it("says a finished run is over: phase DONE, status finished, an end timestamp", async () => {
    const m = new CoordinatorMetrics({ run: "run-a", processMetrics: false });
    const ev = feeder(m);
    ev("run_started", { seed: 0, tasks: 1, resumed_at_task: 0 });
    ev("phase_started", { task: 0, phase: "CHECKPOINT" });
    expect(await value(m, "inflora_run_finished_timestamp_seconds")).toBeUndefined();
    const before = Date.now() / 1000;
    ev("run_finished", { final_accuracy: 50, average_accuracy: 50, forgetting: null, bwt: null });
    expect(await value(m, "inflora_phase", { phase: "DONE" })).toBe(1);
    expect(await value(m, "inflora_phase", { phase: "CHECKPOINT" })).toBe(0);
    expect(await value(m, "inflora_run_status", { status: "finished" })).toBe(1);
    const ended = (await value(m, "inflora_run_finished_timestamp_seconds")) ?? 0;
    expect(ended).toBeGreaterThanOrEqual(before - 1);
    expect(ended).toBeLessThanOrEqual(Date.now() / 1000 + 1);
  });

  it("says a failed run failed, in the phase it failed in, with an end timestamp", async () => {
    const m = new CoordinatorMetrics({ run: "run-a", processMetrics: false });
    const ev = feeder(m);
    ev("run_started", { seed: 0, tasks: 2, resumed_at_task: 0 });
    ev("phase_started", { task: 0, phase: "TRAIN" });
    ev("run_failed", { task: 0, phase: "TRAIN", error: "no worker" });
    expect(await value(m, "inflora_run_status", { status: "failed" })).toBe(1);
    expect(await value(m, "inflora_run_status", { status: "running" })).toBe(0);
    expect(await value(m, "inflora_phase", { phase: "TRAIN" })).toBe(1);
    expect(await value(m, "inflora_phase", { phase: "DONE" })).toBe(0);
    expect(await value(m, "inflora_run_finished_timestamp_seconds")).toBeGreaterThan(0);
  });

  it("shows one run's series (and the info metric) in runRegistry, for the Pushgateway", async () => {
    const m = new CoordinatorMetrics({ run: "seed-0-run" });
    m.setInfo("blas", "1.2.3");
    feeder(m, "seed-0-run")("task_finished", { task: 0, cil: 50, with_task: 50, accuracy_row: [50] });
    feeder(m, "seed-1-run")("run_started", { seed: 1, tasks: 1 });
    feeder(m, "seed-1-run")("task_finished", { task: 0, cil: 60, with_task: 60, accuracy_row: [60] });
    m.observeStep(0.1, 1, 8);
    const text = await m.runRegistry("seed-1-run").metrics();
    expect(text).toContain(
      'inflora_task_accuracy_ratio{run="seed-1-run",after_task="0",task="0",stage="final"} 0.6',
    );
    expect(text).toContain('inflora_step_duration_seconds_bucket{le="0.25",run="seed-1-run"} 1');
    expect(text).toContain('inflora_info{role="coordinator",backend="blas",version="1.2.3"} 1');
    expect(text).not.toContain("seed-0-run");
    expect(text).not.toMatch(/^(process|nodejs)_/m);
    // The full registry still has both runs.
    expect(await m.registry.metrics()).toContain("seed-0-run");
  });

  it("never throws from the event sink", () => {
    const m = new CoordinatorMetrics({ run: "run-a", processMetrics: false });
    expect(() =>
      m.eventSink({ time: "", run: "run-a", event: "task_finished", task: 0, accuracy_row: "bad" } as never),
    ).not.toThrow();
  });

  it("counts the payload bytes of worker replies", () => {
    const f = (n: number) => new Float32Array(n);
    expect(
      trainStepBytes([
        {
          index: 0,
          count: 1,
          lossSum: 0,
          correct: 0,
          gradAk: [f(3)],
          gradAv: [f(3)],
          gradHeadW: f(2),
          gradHeadB: f(1),
        },
      ]),
    ).toBe(36);
    expect(covarianceBytes([{ index: 0, tokens: 1, sums: [f(4), f(4)] }])).toBe(32);
  });
});

describe("CoordinatorMetrics.setRun", () => {
  it("exports no run before the first one is set (no placeholder run that looks in progress)", async () => {
    const m = new CoordinatorMetrics({ processMetrics: false });
    expect(await m.registry.metrics()).not.toMatch(/^inflora_run_status\{/m);
    m.setRun("run-a");
    const text = await m.registry.metrics();
    expect(text.match(/^inflora_run_status\{.*\} 1$/gm)).toEqual([
      'inflora_run_status{run="run-a",status="running"} 1',
    ]);
  });

  it("labels restored accuracies and observations with the run set before run_started", async () => {
    const m = new CoordinatorMetrics({ run: "seed-0-run", processMetrics: false });
    m.setRun("seed-1-run");
    m.restoreAccuracy({ curve: { cil: [80], with_task: [80] }, accuracy_matrix: [[80]] });
    m.observeStep(0.2, 1, 16);
    const text = await m.registry.metrics();
    expect(text).toContain(
      'inflora_task_accuracy_ratio{run="seed-1-run",after_task="0",task="0",stage="final"} 0.8',
    );
    expect(text).toContain('inflora_steps_total{run="seed-1-run"} 1');
    expect(text).toContain('inflora_run_status{run="seed-1-run",status="running"} 1');
  });
});
