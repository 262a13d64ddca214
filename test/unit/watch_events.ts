/** A short run's events, as the trainer writes them to events.jsonl (coordinator/trainer.ts). */
import type { RunEvent } from "../../coordinator/events.js";

export function runEvents(run = "9d3c0f52-aaaa-bbbb-cccc-000000000001"): RunEvent[] {
  const events: RunEvent[] = [];
  let clock = Date.parse("2026-11-27T10:00:00Z");
  const ev = (event: RunEvent["event"], fields: Record<string, unknown> = {}) => {
    clock += 1000;
    events.push({ time: new Date(clock).toISOString(), run, event, ...fields });
  };
  ev("worker_joined", { worker: "10.0.0.7:50051", backend: "node-gpu", device: "GPU 0" });
  ev("worker_joined", { worker: "10.0.0.8:50051", backend: "node-gpu", device: "GPU 0" });
  ev("run_started", { seed: 0, tasks: 3, resumed_at_task: 0 });
  const rows = [[98.5], [91.25, 96], [88, 90.5, 95.75]];
  const cil = [98.5, 93.63, 91.42];
  const aware = [98.5, 95.1, 94.2];
  for (let task = 0; task < 3; task++) {
    ev("task_started", { task });
    for (const phase of ["COVARIANCE_PRE", "DESIGN", "TRAIN"]) ev("phase_started", { task, phase });
    for (let epoch = 0; epoch < 2; epoch++) {
      ev("epoch_started", { task, epoch, lr: 5e-4 });
      ev("epoch_finished", {
        task,
        epoch,
        epochs: 2,
        lr: 5e-4,
        loss: 1.2 - 0.3 * epoch - 0.1 * task,
        train_accuracy: 80 + 5 * epoch,
        seconds: 12.5,
        images_per_second: 512.5,
        workers: 2,
      });
    }
    if (task === 1)
      ev("worker_failed", { worker: "10.0.0.8:50051", reason: "deadline exceeded", status: "failed" });
    for (const phase of ["COVARIANCE_POST", "DUALGPM", "EVAL", "CHECKPOINT"])
      ev("phase_started", { task, phase });
    ev("checkpoint_written", { task, file: `checkpoints/task-0${task}.safetensors` });
    ev("task_finished", { task, cil: cil[task], with_task: aware[task], accuracy_row: rows[task] });
  }
  ev("run_finished", {
    curve: { cil, with_task: aware },
    accuracy_matrix: rows,
    final_accuracy: 91.42,
    average_accuracy: 94.52,
    forgetting: 7,
    bwt: -7,
  });
  return events;
}
