/**
 * The dashboard against a real Prometheus (Debian's `prometheus`) scraping a real run: a coordinator and
 * two standalone workers with metrics ports train the fixture (5 tasks, under InfLoRA_CA1 so that the
 * classifier-alignment panel has data too) while Prometheus scrapes them every second. Then every query of deploy/grafana/dashboards/inflora-run.json is asked through the HTTP API the
 * way Grafana asks it (instant or range, `$run`, `$__rate_interval` and `$__range` substituted), after the
 * coordinator has exited, and each must return data; the last accuracy-matrix row and A_T must equal the
 * run's metrics.json. The alert rules are loaded and must evaluate without error, and InfloraWorkerDown
 * must fire when a worker is killed mid-run (from a test-only copy of the rules whose `for:` is 1 s, as the
 * shipped 2 minutes would outlast the run). The coordinator also pushes to a real Pushgateway, and a
 * worker stopped with SIGTERM keeps serving its final counters for its linger.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { type ChildWorker, MAIN, startWorker, stopWorkers } from "../helpers/distributed.js";
import { freePort } from "../helpers/nats_server.js";
import { type Daemon, startPrometheus, startPushgateway } from "../helpers/prometheus_daemons.js";
import { prometheus, pushgateway } from "./ops_tools.js";

const ROOT = path.resolve(import.meta.dirname, "../..");
const TSX = createRequire(import.meta.url).resolve("tsx");
const FIXTURE_CONFIG = path.join(ROOT, "configs/fixture_tiny.json");
const DASHBOARD = path.join(ROOT, "deploy/grafana/dashboards/inflora-run.json");
const RULES = path.join(ROOT, "deploy/prometheus/rules/inflora.rules.yaml");
/** Grafana's $__rate_interval for a 1 s scrape interval and a 1 s step: max(4 × scrape, step + scrape). */
const RATE_INTERVAL = "4s";
const STEP = 1;
const COORDINATOR_LINGER = "6s";
const WORKER_LINGER_S = 4;

interface Target {
  expr: string;
  instant?: boolean;
  refId?: string;
}
interface Panel {
  title: string;
  targets?: Target[];
  panels?: Panel[];
}
type Sample = [number, string];
interface Series {
  metric: Record<string, string>;
  value?: Sample;
  values?: Sample[];
}

const tmp = mkdtempSync(path.join(os.tmpdir(), "inflora-prom-live-"));
const out = path.join(tmp, "run");
let prom: Daemon;
let gateway: Daemon;
let workers: ChildWorker[] = [];
let workerPorts: number[] = [];
let coordinator: ChildProcess | undefined;
let start = 0;
let end = 0;
let runId = "";
let firing: Array<{ labels: Record<string, string>; state: string }> = [];
const coordinatorExit: { code: number | null; stderr: string } = { code: null, stderr: "" };

async function api<T>(pathAndQuery: string): Promise<T> {
  const res = await fetch(prom.url + pathAndQuery);
  const body = (await res.json()) as { status: string; data: T; error?: string };
  if (body.status !== "success") throw new Error(`${pathAndQuery}: ${body.error ?? res.status}`);
  return body.data;
}

async function instant(expr: string, time?: number): Promise<Series[]> {
  const q = new URLSearchParams({ query: expr });
  if (time !== undefined) q.set("time", String(time));
  return (await api<{ result: Series[] }>(`/api/v1/query?${q}`)).result;
}

async function range(expr: string): Promise<Series[]> {
  const q = new URLSearchParams({ query: expr, start: String(start), end: String(end), step: String(STEP) });
  return (await api<{ result: Series[] }>(`/api/v1/query_range?${q}`)).result;
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const finite = (s: Sample) => Number.isFinite(Number(s[1]));
const hasData = (series: Series[]) =>
  series.some((s) => (s.value ? finite(s.value) : (s.values ?? []).some(finite)));

function substitute(expr: string): string {
  return expr
    .replaceAll("$__rate_interval", RATE_INTERVAL)
    .replaceAll("$__range", `${Math.ceil(end - start)}s`)
    .replaceAll('run=~"$run"', `run=~"${runId}"`);
}

/** The fixture's config under InfLoRA_CA1 (paths made absolute), in the test's folder. */
function alignedConfig(): string {
  const cfg = JSON.parse(readFileSync(FIXTURE_CONFIG, "utf8"));
  const dir = path.dirname(FIXTURE_CONFIG);
  Object.assign(cfg, {
    model_name: "InfLoRA_CA1",
    data_path: path.resolve(dir, cfg.data_path),
    weights: path.resolve(dir, cfg.weights),
  });
  const file = path.join(tmp, "fixture_ca1.json");
  writeFileSync(file, JSON.stringify(cfg));
  return file;
}

function panels(list: Panel[]): Panel[] {
  return list.flatMap((p) => [p, ...panels(p.panels ?? [])]);
}

/** The shipped rules with every `for:` shortened to 1 s: a test-only copy, so alerts fire within the run. */
function fastRules(file: string): void {
  const rules = parse(readFileSync(RULES, "utf8")) as {
    groups: Array<{ interval?: string; rules: object[] }>;
  };
  for (const g of rules.groups) {
    g.interval = "1s";
    for (const r of g.rules as Array<{ for?: string }>) if (r.for) r.for = "1s";
  }
  writeFileSync(file, stringify(rules));
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once("exit", (code) => resolve(code)));
}

beforeAll(async () => {
  const promBin = prometheus();
  gateway = await startPushgateway(pushgateway());
  workerPorts = [await freePort(), await freePort()];
  const coordinatorPort = await freePort();
  workers = await Promise.all(
    workerPorts.map((p) =>
      startWorker(["--metrics-port", String(p), "--metrics-linger", `${WORKER_LINGER_S}s`]),
    ),
  );
  const rules = path.join(tmp, "rules.yaml");
  fastRules(rules);
  const config = path.join(tmp, "prometheus.yml");
  writeFileSync(
    config,
    stringify({
      global: { scrape_interval: "1s", scrape_timeout: "1s", evaluation_interval: "1s" },
      rule_files: [rules],
      scrape_configs: [
        { job_name: "inflora-coordinator", static_configs: [{ targets: [`127.0.0.1:${coordinatorPort}`] }] },
        {
          job_name: "inflora-worker",
          static_configs: [{ targets: workerPorts.map((p) => `127.0.0.1:${p}`) }],
        },
      ],
    }),
  );
  prom = await startPrometheus(promBin, config, path.join(tmp, "tsdb"));
  start = Math.floor(Date.now() / 1000) - 1;

  coordinator = spawn(
    process.execPath,
    [
      "--import",
      TSX,
      MAIN,
      "coordinator",
      "--config",
      alignedConfig(),
      "--out",
      out,
      ...workers.flatMap((w) => ["--worker", w.address]),
      "--metrics-port",
      String(coordinatorPort),
      "--metrics-linger",
      COORDINATOR_LINGER,
      "--pushgateway",
      gateway.url,
      "--transport-threads",
      "0",
    ],
    { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, INFLORA_LOG_LEVEL: "warn" } },
  );
  coordinator.stderr?.on("data", (d) => {
    coordinatorExit.stderr = (coordinatorExit.stderr + d.toString()).slice(-10_000);
  });
  const coordinatorDone = exited(coordinator);

  // Both workers have trained (Prometheus saw it), then one is killed mid-run: InfloraWorkerDown must fire
  // while the run is still going.
  const victim = `127.0.0.1:${workerPorts[1]}`;
  await until(
    "both workers to report training images",
    async () =>
      (await instant('inflora_worker_images_total{kind="train"} > 0')).length === 2 &&
      (await instant('inflora_run_status{status="running"} == 1')).length === 1,
    120_000,
  );
  workers[1].child.kill("SIGKILL");
  await until(
    "InfloraWorkerDown to fire",
    async () => {
      const alerts = await api<{ alerts: Array<{ labels: Record<string, string>; state: string }> }>(
        "/api/v1/alerts",
      );
      firing = alerts.alerts.filter(
        (a) => a.labels.alertname === "InfloraWorkerDown" && a.state === "firing",
      );
      return firing.some((a) => a.labels.instance === victim);
    },
    60_000,
  );

  coordinatorExit.code = await coordinatorDone;
  // Let Prometheus notice the coordinator is gone (its series go stale) before the dashboard is asked.
  await new Promise((r) => setTimeout(r, 2500));
  end = Math.ceil(Date.now() / 1000);
  runId = (JSON.parse(readFileSync(path.join(out, "run.json"), "utf8")) as { run_id: string }).run_id;
}, 240_000);

afterAll(async () => {
  if (coordinator && coordinator.exitCode === null) coordinator.kill("SIGKILL");
  stopWorkers(workers);
  await prom?.stop();
  await gateway?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

describe("a real Prometheus scraping a real run", () => {
  it("saw the run finish: the coordinator exited 0 after serving phase DONE and A_T", async () => {
    expect(coordinatorExit.code, coordinatorExit.stderr).toBe(0);
    const done = await range(`inflora_phase{run="${runId}",phase="DONE"} == 1`);
    expect(hasData(done)).toBe(true);
    const ended = await range(`inflora_run_finished_timestamp_seconds{run="${runId}"}`);
    expect(hasData(ended)).toBe(true);
    // The dashboard's run-state stat: its last value maps to "finished".
    const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8")) as { panels: Panel[] };
    const state = panels(dashboard.panels).find((p) => p.title === "Run state") as Panel & {
      fieldConfig: { defaults: { mappings: Array<{ options: Record<string, { text: string }> }> } };
    };
    const series = await range(substitute(state.targets?.[0].expr ?? ""));
    const lastValue = series[0]?.values?.at(-1)?.[1] ?? "";
    expect(state.fieldConfig.defaults.mappings[0].options[lastValue]?.text).toBe("finished");
    // After the linger the coordinator is gone: its target is down and its plain series are stale.
    expect(await instant('up{job="inflora-coordinator"}', end)).toMatchObject([{ value: [end, "0"] }]);
    expect(await instant(`inflora_final_accuracy_ratio{run="${runId}",stage="final"}`, end)).toEqual([]);
  });

  it("answers every query of the dashboard with data, after the run", async () => {
    const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8")) as {
      panels: Panel[];
      annotations: { list: Array<{ name: string; expr: string }> };
      templating: { list: Array<{ name: string; query?: { query?: string } | string }> };
    };
    const asked: Array<{ what: string; expr: string; data: boolean }> = [];
    for (const p of panels(dashboard.panels)) {
      for (const t of p.targets ?? []) {
        const expr = substitute(t.expr);
        const result = t.instant ? await instant(expr, end) : await range(expr);
        asked.push({ what: `${p.title} [${t.refId}]`, expr, data: hasData(result) });
      }
    }
    const targets = asked.length;
    for (const a of dashboard.annotations.list) {
      const expr = substitute(a.expr);
      asked.push({ what: `annotation ${a.name}`, expr, data: hasData(await range(expr)) });
    }
    const runVar = dashboard.templating.list.find((v) => v.name === "run");
    const varQuery = typeof runVar?.query === "string" ? runVar.query : (runVar?.query?.query ?? "");
    const metric = /label_values\(\s*([^,)]+)\s*,\s*run\s*\)/.exec(varQuery)?.[1];
    expect(metric, varQuery).toBeDefined();
    const runs = await api<string[]>(
      `/api/v1/label/run/values?${new URLSearchParams({ "match[]": metric!, start: String(start), end: String(end) })}`,
    );
    expect(runs).toContain(runId);

    const empty = asked.filter((a) => !a.data).map((a) => `${a.what}: ${a.expr}`);
    const count = (list: typeof asked) => `${list.filter((a) => a.data).length} of ${list.length}`;
    console.log(
      `dashboard: ${count(asked.slice(0, targets))} panel queries and ${count(asked.slice(targets))} ` +
        `annotation queries returned data; the run variable lists ${JSON.stringify(runs)}`,
    );
    expect(empty).toEqual([]);
    expect(targets).toBeGreaterThan(40);
  });

  it("shows the last accuracy-matrix row and A_T as the run wrote them to metrics.json", async () => {
    const metrics = JSON.parse(readFileSync(path.join(out, "metrics.json"), "utf8")) as {
      final_accuracy: number;
      accuracy_matrix: number[][];
    };
    const last = metrics.accuracy_matrix.length - 1;
    expect(last).toBe(4);
    const window = `${Math.ceil(end - start)}s`;
    const row = await instant(
      `last_over_time(inflora_task_accuracy_ratio{run="${runId}",after_task="${last}",stage="final"}[${window}])`,
      end,
    );
    const byTask = Object.fromEntries(row.map((s) => [s.metric.task, Number(s.value?.[1])]));
    const final = await range(`inflora_final_accuracy_ratio{run="${runId}",stage="final"}`);
    const finalValue = Number(final[0]?.values?.at(-1)?.[1]);
    console.log(
      `Prometheus: after_task="${last}" row ${JSON.stringify(byTask)}; A_T ${finalValue} ` +
        `(metrics.json: row ${JSON.stringify(metrics.accuracy_matrix[last])}, final ${metrics.final_accuracy})`,
    );
    expect(Object.keys(byTask).sort()).toEqual(metrics.accuracy_matrix[last].map((_, t) => String(t)));
    metrics.accuracy_matrix[last].forEach((a, t) => {
      expect(byTask[String(t)], `task ${t}`).toBeCloseTo(a / 100, 12);
    });
    expect(finalValue).toBeCloseTo(metrics.final_accuracy / 100, 12);
  });

  it("loads the alert rules, which evaluate without error, and fired InfloraWorkerDown for the killed worker", async () => {
    const rules = await api<{
      groups: Array<{ name: string; rules: Array<{ name: string; health: string; lastError?: string }> }>;
    }>("/api/v1/rules");
    const all = rules.groups.flatMap((g) => g.rules);
    const shipped = parse(readFileSync(RULES, "utf8")) as { groups: Array<{ rules: unknown[] }> };
    expect(all.length).toBe(shipped.groups.flatMap((g) => g.rules).length);
    const unhealthy = all
      .filter((r) => r.health !== "ok" || r.lastError)
      .map((r) => `${r.name}: ${r.lastError}`);
    expect(unhealthy).toEqual([]);
    expect(firing.map((a) => a.labels.instance)).toEqual([`127.0.0.1:${workerPorts[1]}`]);
    expect(firing[0].labels).toMatchObject({ job: "inflora-worker", severity: "warning" });
  });

  it("received the run's final series in the Pushgateway, grouped by run", async () => {
    const text = await (await fetch(`${gateway.url}/metrics`)).text();
    const metrics = JSON.parse(readFileSync(path.join(out, "metrics.json"), "utf8")) as {
      final_accuracy: number;
    };
    const line = text
      .split("\n")
      .find(
        (l) =>
          l.startsWith("inflora_final_accuracy_ratio{") &&
          l.includes(`run="${runId}"`) &&
          l.includes('stage="final"'),
      );
    expect(line).toContain('job="inflora"');
    expect(Number(line?.split(" ").at(-1))).toBeCloseTo(metrics.final_accuracy / 100, 12);
  });

  it("a worker stopped with SIGTERM serves its final counters until its linger ends, then exits", async () => {
    const url = `http://127.0.0.1:${workerPorts[0]}/metrics`;
    const before = await (await fetch(url)).text();
    const images = /^inflora_worker_images_total\{kind="train"\} (\S+)$/m.exec(before)?.[1];
    expect(Number(images)).toBeGreaterThan(0);
    const stopped = Date.now();
    const done = exited(workers[0].child);
    workers[0].child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 1500));
    expect(workers[0].child.exitCode).toBeNull();
    const after = await (await fetch(url)).text();
    expect(after).toContain(`inflora_worker_images_total{kind="train"} ${images}`);
    expect(await done).toBe(0);
    const seconds = (Date.now() - stopped) / 1000;
    expect(seconds).toBeGreaterThanOrEqual(WORKER_LINGER_S - 0.5);
    expect(seconds).toBeLessThan(WORKER_LINGER_S + 15);
  });
});
