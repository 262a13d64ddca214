/** Shared by the distributed tests: short fixture configs, worker processes, run comparison. */
import { type ChildProcess, fork } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { freePort } from "./nats_server.js";
import { REFERENCE_DIR } from "./reference_compare.js";

const ROOT = path.resolve(import.meta.dirname, "../..");
const TSX = createRequire(import.meta.url).resolve("tsx");
export const MAIN = path.join(ROOT, "cli/main.ts");

/** The fixture config, one epoch per task, progress saved every 2 steps; absolute paths. */
export function shortConfig(dir: string, overrides: Record<string, unknown> = {}): string {
  const cfg = JSON.parse(readFileSync(path.join(REFERENCE_DIR, "tiny_config.json"), "utf8"));
  Object.assign(cfg, { init_epoch: 2, epochs: 2, checkpoint_every: 2 }, overrides);
  cfg.weights = path.join(REFERENCE_DIR, cfg.weights);
  cfg.data_path = path.join(REFERENCE_DIR, cfg.data_path);
  const file = path.join(dir, "config.json");
  writeFileSync(file, JSON.stringify(cfg, null, 1));
  return file;
}

export interface ChildWorker {
  readonly address: string;
  readonly child: ChildProcess;
  /** Settles when a NATS worker holds its lease (`{type: "leased"}` over IPC); forkWorker's children only. */
  readonly leased?: Promise<void>;
}

/** Forks a TypeScript entry that reports `{type: "listening", address}` over IPC. */
export function forkWorker(
  script: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<ChildWorker> {
  const child = fork(script, args, {
    execArgv: ["--import", TSX],
    stdio: ["ignore", "ignore", "inherit", "ipc"],
    env: { ...process.env, INFLORA_PARENT_IPC: "1", INFLORA_LOG_LEVEL: "warn", ...env },
  });
  // Listened for from the start: the message may follow "listening" closely.
  const leased = new Promise<void>((resolve) => {
    child.on("message", (m: { type?: string }) => {
      if (m?.type === "leased") resolve();
    });
  });
  return listening(child, "worker").then((w) => ({ ...w, leased }));
}

/** `p`, or undefined after `ms`: a test's wait that must not hang it. */
export function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  return Promise.race([p, new Promise<undefined>((r) => setTimeout(() => r(undefined), ms).unref())]);
}

/**
 * The address a child process reports over IPC (`{type: "listening", address}`, as `inflora worker` does
 * under INFLORA_PARENT_IPC); rejects, naming `what`, if it exits first.
 */
export function listening(child: ChildProcess, what: string): Promise<ChildWorker> {
  return new Promise((resolve, reject) => {
    child.once("message", (m: { type?: string; address?: string }) => {
      if (m?.type === "listening" && m.address) resolve({ address: m.address, child });
    });
    child.once("exit", (code, signal) =>
      reject(new Error(`${what} exited early (code ${code}, signal ${signal})`)),
    );
  });
}

/** An `inflora worker` process on a free loopback port. */
export function startWorker(extra: string[] = [], env: Record<string, string> = {}): Promise<ChildWorker> {
  return forkWorker(MAIN, ["worker", "--listen", "127.0.0.1:0", ...extra], env);
}

export function stopWorkers(workers: ChildWorker[]): void {
  for (const w of workers)
    if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill("SIGKILL");
}

/**
 * Every file of the run-directory contract byte for byte (run.json and events differ by nature); the class
 * statistics of classifier alignment where the runs have them.
 */
export function expectSameRun(a: string, b: string, expect: (cond: boolean, what: string) => void): void {
  expect(
    readFileSync(path.join(a, "metrics.json"), "utf8") === readFileSync(path.join(b, "metrics.json"), "utf8"),
    "metrics.json",
  );
  for (const dir of ["checkpoints", "predictions", "class_stats"]) {
    const held = [a, b].map((r) => existsSync(path.join(r, dir)));
    expect(held[0] === held[1], `${dir}: held by both runs or neither`);
    if (!held[0] || !held[1]) continue;
    const names = readdirSync(path.join(a, dir))
      .filter((n) => /^task-\d+\.safetensors$/.test(n))
      .sort();
    const other = readdirSync(path.join(b, dir))
      .filter((n) => /^task-\d+\.safetensors$/.test(n))
      .sort();
    expect(JSON.stringify(names) === JSON.stringify(other), `${dir}: same files`);
    for (const n of names) {
      expect(readFileSync(path.join(a, dir, n)).equals(readFileSync(path.join(b, dir, n))), `${dir}/${n}`);
    }
  }
}

export function events(runDir: string): Array<Record<string, unknown>> {
  return readFileSync(path.join(runDir, "events.jsonl"), "utf8")
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

/** The sum of the samples whose lines match `series` (e.g. /^inflora_worker_images_total\{/) in a Prometheus text page. */
export function sumSeries(page: string, series: RegExp): number {
  let total = 0;
  for (const line of page.split("\n")) if (series.test(line)) total += Number(line.split(" ").at(-1));
  return total;
}

/** sumSeries over the page served at `host:port`/metrics. */
export async function scrapeMetric(address: string, series: RegExp): Promise<number> {
  const res = await fetch(`http://${address}/metrics`, { signal: AbortSignal.timeout(10_000) });
  return sumSeries(await res.text(), series);
}

/** `n` workers on loopback that register with NATS leases (ids w0, w1, …), each serving its metrics. */
export function startNatsWorkers(
  url: string,
  n: number,
  leaseMs: number,
): Promise<Array<ChildWorker & { metricsPort: number }>> {
  return Promise.all(
    Array.from({ length: n }, async (_, k) => {
      const metricsPort = await freePort();
      const args = ["--nats", url, "--name", `w${k}`, "--lease-ms", String(leaseMs)];
      const w = await startWorker([...args, "--metrics-port", String(metricsPort)]);
      return { ...w, metricsPort };
    }),
  );
}
