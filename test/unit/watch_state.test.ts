/** The live view's state and frame, folded from a run's events. */
import { describe, expect, it } from "vitest";
import { renderFrame } from "../../cli/watch_render.js";
import { applyEvent, emptyState, summary } from "../../cli/watch_state.js";
import { runEvents } from "./watch_events.js";

describe("watch state", () => {
  it("follows progress, training figures, workers and the accuracy matrix", () => {
    const s = emptyState();
    const events = runEvents();
    const lines: string[] = [];
    for (const e of events.slice(0, 20)) {
      const line = applyEvent(s, e);
      if (line) lines.push(line);
    }
    expect(s).toMatchObject({ status: "running", tasks: 3, seed: 0, task: 1, epochs: 2, workersInUse: 2 });
    expect(s.loss).toBeCloseTo(0.9);
    expect(s.matrix).toEqual([[98.5]]);
    expect(lines).toContain("task 1/3 epoch 2/2: loss 0.9000, train accuracy 85.00%, 512.5 img/s, 2 workers");
    expect(lines).toContain("task 1/3 finished: A_t 98.50%, task-aware 98.50%, per task [98.50]");
    for (const e of events.slice(20)) applyEvent(s, e);
    expect(s.status).toBe("finished");
    expect(s.matrix).toEqual([[98.5], [91.25, 96], [88, 90.5, 95.75]]);
    expect(s.workers.get("10.0.0.8:50051")).toEqual({ status: "failed", reason: "deadline exceeded" });
    expect(s.result).toEqual({ final: 91.42, average: 94.52, forgetting: 7, bwt: -7 });
    // forgetting so far: task 0 best 98.5 → 88, task 1 best 96 → 90.5
    expect(summary(s).forgetting).toBeCloseTo((10.5 + 5.5) / 2);
  });

  it("prints one plain line for each event worth one, none for phase and epoch starts", () => {
    const s = emptyState();
    const lines = runEvents().flatMap((e) => applyEvent(s, e) ?? []);
    expect(lines[0]).toBe("worker 10.0.0.7:50051 joined");
    expect(lines).toContain("run 9d3c0f52-aaaa-bbbb-cccc-000000000001 started: seed 0, 3 tasks");
    expect(lines).toContain("worker 10.0.0.8:50051 failed: deadline exceeded");
    expect(lines.at(-1)).toBe("run finished: final 91.42%, average 94.52%, forgetting 7.00, bwt -7.00");
    expect(lines.some((l) => l.includes("phase"))).toBe(false);
  });

  it("prints classifier alignment's epochs and the accuracy before it", () => {
    const s = emptyState();
    const at = (event: string, fields: Record<string, unknown>) =>
      applyEvent(s, { time: "2026-01-01T00:00:00Z", run: "r", event, ...fields } as never);
    at("run_started", { seed: 0, tasks: 3, resumed_at_task: 0 });
    expect(at("alignment_epoch", { task: 1, epoch: 4, epochs: 5, loss: 0.25 })).toBe(
      "task 2/3 alignment epoch 5/5: loss 0.2500",
    );
    const before_alignment = { cil: 70, with_task: 90, accuracy_row: [50, 90] };
    expect(
      at("task_finished", { task: 1, cil: 80, with_task: 90, accuracy_row: [70, 90], before_alignment }),
    ).toBe(
      "task 2/3 finished: A_t 80.00% (before alignment 70.00%), task-aware 90.00%, per task [70.00 90.00]",
    );
  });

  it("renders the matrix with A_t and task-aware columns, fitted to the width", () => {
    const s = emptyState();
    for (const e of runEvents()) applyEvent(s, e);
    const frame = renderFrame(s, "runs/x/events.jsonl", 80);
    expect(frame[0]).toContain("FINISHED");
    expect(frame.join("\n")).toContain("t3       88.0  90.5  95.8    91.4    94.2");
    expect(frame.every((l) => l.length <= 80)).toBe(true);
    expect(frame.at(-1)).toBe("final 91.42%  average 94.52%  forgetting 7.00  bwt -7.00");
  });

  it("notes a resumed run and a failure", () => {
    const s = emptyState();
    const base = { time: "t", run: "r" };
    expect(applyEvent(s, { ...base, event: "run_started", seed: 1, tasks: 10, resumed_at_task: 4 })).toBe(
      "run r started: seed 1, 10 tasks, resumed at task 5",
    );
    expect(applyEvent(s, { ...base, event: "run_failed", error: "no worker available" })).toBe(
      "run failed: no worker available",
    );
    expect(s.status).toBe("failed");
    expect(renderFrame(s, "src")[1]).toBe("error: no worker available");
  });
});
