/**
 * A real Prometheus server and a real Pushgateway for tests: loopback only, a free port, their data in a
 * temp dir, stopped by `stop()` (and killed on process exit, so a crashed test leaves no daemon behind).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { freePort } from "./nats_server.js";

export interface Daemon {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  readonly port: number;
  /** What the daemon logged so far (for failure messages). */
  output(): string;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const p of running) p.kill("SIGKILL");
});

/** Starts `bin` with `args(port)` and resolves once GET `readyPath` answers 200. */
async function startDaemon(
  bin: string,
  args: (port: number) => string[],
  readyPath: string,
): Promise<Daemon> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(bin, args(port), { stdio: ["ignore", "pipe", "pipe"] });
  running.add(child);
  let log = "";
  const keep = (d: Buffer) => {
    log = (log + d.toString()).slice(-20_000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  let exited = false;
  child.once("exit", () => {
    exited = true;
    running.delete(child);
  });
  const stop = async () => {
    if (exited) return;
    const done = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await done;
    clearTimeout(timer);
  };
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (exited) throw new Error(`${bin} exited early:\n${log}`);
    const ok = await fetch(url + readyPath).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return { url, port, output: () => log, stop };
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`${bin} did not become ready within 20 s:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** `prometheus` with `configFile`, its TSDB in `dataDir`. */
export function startPrometheus(bin: string, configFile: string, dataDir: string): Promise<Daemon> {
  return startDaemon(
    bin,
    (port) => [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${dataDir}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    "/-/ready",
  );
}

/**
 * `prometheus-pushgateway`, in memory only: Debian's build persists to /var/lib/prometheus/pushgateway.data
 * by default, which would carry groups from one test run into the next.
 */
export function startPushgateway(bin: string): Promise<Daemon> {
  return startDaemon(
    bin,
    (port) => [`--web.listen-address=127.0.0.1:${port}`, "--persistence.file=", "--log.level=warn"],
    "/-/ready",
  );
}
