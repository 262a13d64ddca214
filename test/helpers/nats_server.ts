/**
 * A real nats-server with JetStream for tests: own port, own store directory, stopped and cleaned up by
 * `stop()` (and killed on process exit so a crashed test run leaves no server behind).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Netns } from "./netns.js";

export interface NatsServerOptions {
  user?: string;
  password?: string;
  token?: string;
  /** PEM files; `verify` makes the server require client certificates signed by `ca`. */
  tls?: { cert: string; key: string; ca?: string; verify?: boolean };
  /**
   * Runs the server inside this network namespace (test/helpers/netns.ts), listening on all of its
   * addresses; `url` is then on its first link's namespace end.
   */
  netns?: Netns;
  /**
   * Address to listen on outside a namespace (default 127.0.0.1; `url` stays on loopback). "0.0.0.0" lets a
   * process in a network namespace reach the server at its link's host end.
   */
  listen?: string;
}

export interface NatsTestServer {
  readonly url: string;
  readonly port: number;
  readonly storeDir: string;
  /** Stops the process (SIGTERM, then SIGKILL) and removes the store directory. */
  stop(): Promise<void>;
  /**
   * Stops and starts again on the same port (and store, unless `wipeStore`), for reconnect tests; stays
   * down `downMs`, and until the promise `downUntil` returns (called once the server is down) settles.
   */
  restart(opts?: { downMs?: number; wipeStore?: boolean; downUntil?: () => Promise<unknown> }): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const p of running) p.kill("SIGKILL");
});

/** Debian installs it in /usr/sbin, which a non-root PATH often lacks. */
function findNatsServer(): string {
  const dirs = [...(process.env.PATH ?? "").split(path.delimiter), "/usr/sbin", "/usr/local/sbin"];
  for (const dir of dirs) {
    if (dir === "") continue;
    const candidate = path.join(dir, "nats-server");
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {}
  }
  throw new Error("nats-server is not installed: apt-get install nats-server");
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function serverArgs(port: number, storeDir: string, o: NatsServerOptions): string[] {
  const args = [
    "-a",
    o.netns ? "0.0.0.0" : (o.listen ?? "127.0.0.1"),
    "-p",
    String(port),
    "-js",
    "-sd",
    storeDir,
  ];
  if (o.user !== undefined) args.push("--user", o.user, "--pass", o.password ?? "");
  if (o.token !== undefined) args.push("--auth", o.token);
  if (o.tls !== undefined) {
    args.push("--tls", "--tlscert", o.tls.cert, "--tlskey", o.tls.key);
    if (o.tls.ca !== undefined) args.push("--tlscacert", o.tls.ca);
    if (o.tls.verify === true) args.push("--tlsverify");
  }
  return args;
}

/** Starts the process and resolves once it logs that it is ready (it then accepts connections). */
function launch(bin: string, args: string[], netns?: Netns): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const stdio = ["ignore", "pipe", "pipe"] as const;
    const child = netns
      ? netns.spawn(bin, args, { stdio: [...stdio] })
      : spawn(bin, args, { stdio: [...stdio] });
    running.add(child);
    let output = "";
    const fail = (why: string) => {
      clearTimeout(timer);
      child.kill("SIGKILL");
      reject(new Error(`nats-server ${args.join(" ")} ${why}\n${output}`));
    };
    const timer = setTimeout(() => fail("did not become ready within 10 s"), 10_000);
    const onData = (d: Buffer) => {
      output += d.toString();
      if (output.includes("Server is ready")) {
        clearTimeout(timer);
        child.stdout?.off("data", onData);
        child.stderr?.off("data", onData);
        // Keep draining so a chatty server never blocks on a full pipe.
        child.stdout?.resume();
        child.stderr?.resume();
        resolve(child);
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("error", (err) => fail(`could not start: ${err.message}`));
    child.once("exit", (code, signal) => {
      running.delete(child);
      fail(`exited early (code ${code}, signal ${signal})`);
    });
  });
}

async function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(timer);
  running.delete(child);
}

export async function startNatsServer(opts: NatsServerOptions = {}): Promise<NatsTestServer> {
  const bin = findNatsServer();
  const storeDir = mkdtempSync(path.join(tmpdir(), "inflora-nats-"));
  let child: ChildProcess | undefined;
  let port = 0;
  // Another process may grab the port between our probe and the server's bind; try a few.
  for (let attempt = 0; child === undefined; attempt++) {
    // A fresh namespace has every port free.
    port = opts.netns ? 4222 : await freePort();
    try {
      child = await launch(bin, serverArgs(port, storeDir, opts), opts.netns);
    } catch (err) {
      if (attempt >= 2 || !String(err).includes("address already in use")) {
        rmSync(storeDir, { recursive: true, force: true });
        throw err;
      }
    }
  }
  let current: ChildProcess = child;
  return {
    url: `nats://${opts.netns ? opts.netns.links[0].nsAddress : "127.0.0.1"}:${port}`,
    port,
    storeDir,
    async stop() {
      await terminate(current);
      rmSync(storeDir, { recursive: true, force: true });
    },
    async restart({ downMs = 0, wipeStore = false, downUntil } = {}) {
      await terminate(current);
      if (wipeStore) rmSync(path.join(storeDir, "jetstream"), { recursive: true, force: true });
      if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
      await downUntil?.().catch(() => {});
      current = await launch(bin, serverArgs(port, storeDir, opts), opts.netns);
    },
  };
}
