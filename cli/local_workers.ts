/**
 * `--workers N`: N worker processes on loopback, started by the coordinator and stopped with it. Each
 * child keeps an IPC channel to its parent and exits when it closes, so even a `kill -9` of the
 * coordinator leaves no orphans.
 */
import { type ChildProcess, fork } from "node:child_process";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { log } from "../common/log.js";
import { spreadOverGpus } from "../worker/webgpu_device.js";

export interface LocalWorker {
  readonly address: string;
  readonly pid: number;
  readonly child: ChildProcess;
}

export interface LocalWorkers {
  readonly workers: LocalWorker[];
  stop(): Promise<void>;
}

/**
 * The CLI a worker child runs, in the form this code runs in: from TypeScript sources `main.ts` through
 * tsx, compiled (`dist/`) `main.js` beside this file, and in the one-file bundle (the only `.mjs` form)
 * this module is part of the CLI's own file.
 */
function cliEntry(): { script: string; execArgv: string[] } {
  const self = fileURLToPath(import.meta.url);
  if (self.endsWith(".ts")) {
    const tsx = createRequire(import.meta.url).resolve("tsx");
    return { script: path.join(path.dirname(self), "main.ts"), execArgv: ["--import", tsx] };
  }
  if (self.endsWith(".mjs")) return { script: self, execArgv: [] };
  return { script: path.join(path.dirname(self), "main.js"), execArgv: [] };
}

export interface LocalWorkerOptions {
  readonly count: number;
  readonly backend?: string;
  /** Hardware GPUs (WebGPU adapters) on this node: worker k takes `--gpu k mod gpus` (spreadOverGpus). */
  readonly gpus?: number;
  /** Extra CLI arguments for every worker (token file, NATS, …). */
  readonly extraArgs?: string[];
  readonly startTimeoutMs?: number;
}

function startOne(k: number, opts: LocalWorkerOptions): Promise<LocalWorker> {
  const entry = cliEntry();
  const args = ["worker", "--listen", "127.0.0.1:0", "--name", `local-${k}`, ...(opts.extraArgs ?? [])];
  if (opts.backend) args.push("--backend", opts.backend);
  const gpu = spreadOverGpus(opts.count, opts.gpus ?? 0)[k];
  if (gpu !== undefined) args.push("--gpu", String(gpu));
  const child = fork(entry.script, args, {
    execArgv: entry.execArgv,
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    env: { ...process.env, INFLORA_PARENT_IPC: "1" },
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`local worker ${k} did not start within ${opts.startTimeoutMs ?? 60_000} ms`));
    }, opts.startTimeoutMs ?? 60_000);
    child.once("message", (m: { type?: string; address?: string }) => {
      if (m?.type !== "listening" || !m.address) return;
      clearTimeout(timer);
      resolve({ address: m.address, pid: child.pid!, child });
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`local worker ${k} exited before listening (code ${code}, signal ${signal})`));
    });
  });
}

export async function startLocalWorkers(opts: LocalWorkerOptions): Promise<LocalWorkers> {
  const started = await Promise.allSettled(Array.from({ length: opts.count }, (_, k) => startOne(k, opts)));
  const workers = started.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
  const stop = async () => {
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.child.exitCode !== null || w.child.signalCode !== null) return resolve();
            const kill = setTimeout(() => w.child.kill("SIGKILL"), 5_000);
            w.child.once("exit", () => {
              clearTimeout(kill);
              resolve();
            });
            w.child.kill("SIGTERM");
          }),
      ),
    );
  };
  const failed = started.find((s) => s.status === "rejected");
  if (failed) {
    await stop();
    throw (failed as PromiseRejectedResult).reason;
  }
  log.info({ workers: workers.map((w) => `${w.address} (pid ${w.pid})`) }, "local workers started");
  // Stop the children on every way out of this process that still runs code.
  const onSignal = (sig: NodeJS.Signals) => {
    void stop().then(() => process.exit(sig === "SIGINT" ? 130 : 143));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  process.once("exit", () => {
    for (const w of workers) if (w.child.exitCode === null) w.child.kill("SIGKILL");
  });
  return { workers, stop };
}
