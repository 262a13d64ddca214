/**
 * Start-up benchmark (`npx tsx bench/startup.ts`): how long `inflora --help`, `inflora train --help` and a
 * worker becoming ready take, with a warm and a cold page cache, for each form of the CLI:
 *
 * - `dist`: the installed command, compiled JavaScript (`bin/inflora.js` → `dist/`; run `npm run build`);
 * - `bundle`: `dist/bundle/inflora.mjs` when `npm run bundle` wrote it;
 * - `tsx`: the TypeScript sources through tsx (`npm run inflora`);
 * - `before`: another checkout's `bin/inflora.js` (`--before DIR`, e.g. main before this change).
 *
 * A worker is ready when it reports its listening address over IPC, as it does to a coordinator that
 * started it (`--listen 127.0.0.1:0`, default backend). Cold runs drop the page cache first
 * (`sync; echo 3 > /proc/sys/vm/drop_caches`, root only; tsx's own transform cache stays as it is).
 * Wall and CPU (user + system) times are medians; on a busy machine CPU time is the steadier figure.
 * Writes bench/results/startup.md.
 *
 *   npx tsx bench/startup.ts --before /path/to/main --runs 5 --cold-runs 3
 */
import { execFileSync, fork, spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { cpus, loadavg } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";

const ROOT = path.resolve(import.meta.dirname, "..");
const TICK_MS = 10; // Linux USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s.

interface Form {
  readonly name: string;
  readonly script: string;
  readonly execArgv: string[];
}

interface Sample {
  readonly wallMs: number;
  readonly cpuMs: number;
}

const { values: args } = parseArgs({
  options: {
    before: { type: "string" },
    runs: { type: "string", default: "5" },
    "cold-runs": { type: "string", default: "3" },
    out: { type: "string", default: path.join(ROOT, "bench", "results", "startup.md") },
  },
});

function forms(): Form[] {
  const list: Form[] = [];
  if (args.before) {
    list.push({
      name: "before",
      script: path.join(path.resolve(args.before), "bin", "inflora.js"),
      execArgv: [],
    });
  }
  const tsx = createRequire(import.meta.url).resolve("tsx");
  list.push({ name: "tsx", script: path.join(ROOT, "cli", "main.ts"), execArgv: ["--import", tsx] });
  if (!existsSync(path.join(ROOT, "dist", "cli", "main.js"))) {
    throw new Error("dist/ is missing: run `npm run build` first");
  }
  list.push({ name: "dist", script: path.join(ROOT, "bin", "inflora.js"), execArgv: [] });
  const bundle = path.join(ROOT, "dist", "bundle", "inflora.mjs");
  if (existsSync(bundle)) list.push({ name: "bundle", script: bundle, execArgv: [] });
  return list;
}

function dropCaches(): void {
  try {
    execFileSync("sh", ["-c", "sync && echo 3 > /proc/sys/vm/drop_caches"], { stdio: "ignore" });
  } catch {
    throw new Error(
      "cold runs need root: `sync; echo 3 > /proc/sys/vm/drop_caches` failed (pass --cold-runs 0)",
    );
  }
}

/** CPU time of a live process from /proc/<pid>/stat (utime + stime). */
function cpuMsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
}

/** A command that exits by itself, timed by GNU time for its CPU use. */
function runCommand(form: Form, argv: string[]): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(
      "/usr/bin/time",
      ["-f", "cpu %U %S", process.execPath, ...form.execArgv, form.script, ...argv],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.on("error", reject);
    child.on("exit", (code) => {
      const wallMs = performance.now() - started;
      const m = /cpu ([\d.]+) ([\d.]+)\s*$/.exec(stderr);
      if (code !== 0 || !m) reject(new Error(`${form.name} ${argv.join(" ")} failed (${code}): ${stderr}`));
      else resolve({ wallMs, cpuMs: (Number(m[1]) + Number(m[2])) * 1000 });
    });
  });
}

/** A worker from start to its "listening" message, then stopped. */
function runWorker(form: Form): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = fork(form.script, ["worker", "--listen", "127.0.0.1:0", "--log-level", "warn"], {
      execArgv: form.execArgv,
      stdio: ["ignore", "ignore", "inherit", "ipc"],
      env: { ...process.env, INFLORA_PARENT_IPC: "1" },
    });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${form.name} worker not ready within 120 s`));
    }, 120_000);
    let ready: Sample | undefined;
    child.on("message", (m: { type?: string }) => {
      if (m?.type !== "listening" || ready) return;
      ready = { wallMs: performance.now() - started, cpuMs: cpuMsOf(child.pid as number) };
      child.kill("SIGTERM");
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      if (ready) resolve(ready);
      else reject(new Error(`${form.name} worker exited before listening (${code})`));
    });
  });
}

const CASES: { name: string; run: (f: Form) => Promise<Sample> }[] = [
  { name: "inflora --help", run: (f) => runCommand(f, ["--help"]) },
  { name: "inflora train --help", run: (f) => runCommand(f, ["train", "--help"]) },
  { name: "worker ready", run: (f) => runWorker(f) },
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function measure(form: Form, c: (typeof CASES)[number], runs: number, cold: boolean): Promise<Sample> {
  const samples: Sample[] = [];
  if (!cold) await c.run(form); // warms the page cache (and tsx's cache) before the timed runs
  for (let i = 0; i < runs; i++) {
    if (cold) dropCaches();
    samples.push(await c.run(form));
  }
  return { wallMs: median(samples.map((s) => s.wallMs)), cpuMs: median(samples.map((s) => s.cpuMs)) };
}

async function main(): Promise<void> {
  const runs = Number(args.runs);
  const coldRuns = Number(args["cold-runs"]);
  const list = forms();
  const loadStart = loadavg();
  const rows: string[] = [];
  for (const c of CASES) {
    for (const form of list) {
      const warm = await measure(form, c, runs, false);
      const cold = coldRuns > 0 ? await measure(form, c, coldRuns, true) : undefined;
      const cell = (s: Sample | undefined) =>
        s ? `${s.wallMs.toFixed(0)} | ${s.cpuMs.toFixed(0)}` : "- | -";
      const row = `| ${c.name} | ${form.name} | ${cell(warm)} | ${cell(cold)} |`;
      process.stdout.write(`${row}\n`);
      rows.push(row);
    }
  }
  const loadEnd = loadavg();
  const fmt = (l: number[]) => l.map((x) => x.toFixed(2)).join("/");
  const lines = [
    "# Start-up benchmark (`npx tsx bench/startup.ts`)",
    "",
    `${new Date().toISOString()} · ${cpus()[0]?.model.trim()} × ${cpus().length} · Node ${process.version} · ` +
      `${runs} warm runs, ${coldRuns} cold runs (page cache dropped before each) per row, medians`,
    "",
    `Load average (1/5/15 min) at start ${fmt(loadStart)}, at end ${fmt(loadEnd)}.`,
    "",
    "Forms: `before` = the checkout given with --before (its bin/inflora.js), `tsx` = these sources through",
    "tsx, `dist` = the compiled package (bin/inflora.js), `bundle` = dist/bundle/inflora.mjs.",
    "A worker is ready when it reports its address (`worker --listen 127.0.0.1:0`, default backend).",
    "",
    "| command | form | warm wall ms | warm CPU ms | cold wall ms | cold CPU ms |",
    "|---|---|---|---|---|---|",
    ...rows,
    "",
  ];
  writeFileSync(args.out as string, lines.join("\n"));
  process.stdout.write(`wrote ${path.relative(ROOT, args.out as string)}\n`);
}

await main();
