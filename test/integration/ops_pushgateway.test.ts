/**
 * `--pushgateway`: a run's final series pushed to a real Prometheus Pushgateway (Debian's
 * prometheus-pushgateway), grouped by run, and read back from the Pushgateway's own /metrics.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EventName, RunEvent } from "../../coordinator/events.js";
import { CoordinatorMetrics } from "../../coordinator/metrics.js";
import { PUSH_JOB, PushError, pushRunMetrics } from "../../coordinator/metrics_push.js";
import { freePort } from "../helpers/nats_server.js";
import { type Daemon, startPushgateway } from "../helpers/prometheus_daemons.js";
import { pushgateway } from "./ops_tools.js";

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a text exposition (no escaped quotes in our label values). */
function samples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_]\w*)="([^"]*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

function finishRun(m: CoordinatorMetrics, run: string, final: number): void {
  const ev = (event: EventName, fields: Record<string, unknown> = {}) =>
    m.eventSink({ time: new Date().toISOString(), run, event, ...fields } as RunEvent);
  ev("run_started", { seed: 0, tasks: 2, resumed_at_task: 0 });
  ev("task_finished", { task: 0, cil: 90, with_task: 90, accuracy_row: [90] });
  ev("task_finished", { task: 1, cil: final, with_task: 88, accuracy_row: [70, 90] });
  ev("run_finished", { final_accuracy: final, average_accuracy: (90 + final) / 2, forgetting: 20, bwt: -20 });
}

let gateway: Daemon;

beforeAll(async () => {
  gateway = await startPushgateway(pushgateway());
});

afterAll(async () => {
  await gateway?.stop();
});

describe("pushing a run's final metrics", () => {
  it("puts each run in its own group (job inflora, run id), which the Pushgateway accepts and serves", async () => {
    const m = new CoordinatorMetrics({ run: "run-a" });
    m.setInfo("blas", "1.2.3");
    finishRun(m, "run-a", 80);
    await pushRunMetrics(gateway.url, m, "run-a");
    finishRun(m, "run-b", 70);
    await pushRunMetrics(gateway.url, m, "run-b");

    const served = samples(await (await fetch(`${gateway.url}/metrics`)).text());
    const of = (name: string, labels: Record<string, string>) =>
      served.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
    for (const [run, final] of [
      ["run-a", 0.8],
      ["run-b", 0.7],
    ] as const) {
      const group = { job: PUSH_JOB, run };
      expect(of("inflora_final_accuracy_ratio", group).map((s) => s.value)).toEqual([final]);
      expect(of("inflora_task_accuracy_ratio", { ...group, after_task: "1", task: "0" })[0]?.value).toBe(0.7);
      expect(of("inflora_run_status", { ...group, status: "finished" })[0]?.value).toBe(1);
      expect(of("inflora_phase", { ...group, phase: "DONE" })[0]?.value).toBe(1);
      expect(of("inflora_run_finished_timestamp_seconds", group)).toHaveLength(1);
      expect(of("inflora_info", { ...group, role: "coordinator", backend: "blas" })).toHaveLength(1);
      // The Pushgateway's own record of the push: it succeeded.
      expect(of("push_time_seconds", group)[0]?.value).toBeGreaterThan(Date.now() / 1000 - 60);
      expect(of("push_failure_time_seconds", group)[0]?.value).toBe(0);
    }
    // Nothing of the other run leaked into a group, and no process metrics were pushed.
    for (const s of served.filter((x) => x.labels.job === PUSH_JOB))
      expect(s.labels.run === "run-a" || s.labels.run === "run-b", JSON.stringify(s)).toBe(true);
    expect(served.some((s) => s.labels.job === PUSH_JOB && s.name.startsWith("process_"))).toBe(false);
  });

  it("replaces a run's group on the next push (PUT), so a resumed run leaves no stale series", async () => {
    const m = new CoordinatorMetrics({ run: "run-c" });
    finishRun(m, "run-c", 60);
    await pushRunMetrics(gateway.url, m, "run-c");
    m.setBasisWidths([3], ["remove"]);
    m.setBasisWidths([5], ["retain"]);
    await pushRunMetrics(gateway.url, m, "run-c");
    const served = samples(await (await fetch(`${gateway.url}/metrics`)).text()).filter(
      (s) => s.name === "inflora_dualgpm_basis_width" && s.labels.run === "run-c",
    );
    expect(served.map((s) => [s.labels.type, s.value])).toEqual([["retain", 5]]);
  });

  it("fails with an error naming the Pushgateway when nothing answers", async () => {
    const m = new CoordinatorMetrics({ run: "run-d", processMetrics: false });
    const url = `http://127.0.0.1:${await freePort()}`;
    const err = await pushRunMetrics(url, m, "run-d").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PushError);
    expect((err as Error).message).toContain(`run run-d's metrics to the Pushgateway at ${url} failed`);
  });
});
