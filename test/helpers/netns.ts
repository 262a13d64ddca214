/**
 * Real network partitions for fault tests: a Linux network namespace joined to the test's own namespace by
 * veth pairs, each on a private /30 of 198.18.0.0/15 (the range RFC 2544 sets aside for testing networks).
 * A process started with `exec` lives in the namespace and is reached at a link's `nsAddress`; `cut()`
 * takes the namespace's end of that link down, so packets from outside vanish without an answer (no RST,
 * no ICMP) — the half-open connections of a node that is alive but unreachable — and `restore()` brings
 * it back.
 *
 * Names carry this process's pid (`ifl<pid>-<n>`), so parallel test files never collide, and anything left
 * by a process that no longer runs is removed by the next `createNetns`. Namespaces are removed by
 * `remove()`, by `removeAllNetns()` (afterAll), and on process exit, so a failing test leaves nothing.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createRequire } from "node:module";
import { listening } from "./distributed.js";

const PREFIX = "ifl";
/** 198.18.0.0/15 holds 2^15 /30 subnets; a pid's share is 16 of them. */
const SUBNETS = 1 << 15;
const PER_PID = 16;

export interface NetnsLink {
  /** The test's (root namespace) end: what a process in the namespace dials to reach the test's side. */
  readonly hostAddress: string;
  /** The namespace's end: where a process in the namespace listens. */
  readonly nsAddress: string;
  /** Takes the namespace's end down: silence both ways, until restore(). Returns the time it took effect. */
  cut(): number;
  restore(): number;
  readonly isCut: boolean;
}

export interface Netns {
  readonly name: string;
  readonly links: readonly NetnsLink[];
  /** Starts `command` inside the namespace; `stdio` as for spawn (an "ipc" entry gives process.send). */
  spawn(
    command: string,
    args: string[],
    options?: { env?: NodeJS.ProcessEnv; stdio?: Parameters<typeof spawn>[2]["stdio"] },
  ): ChildProcess;
  /** Kills what runs inside and deletes the namespace and its links; safe to call twice. */
  remove(): void;
}

function ip(args: string[]): string {
  try {
    return execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (err) {
    const e = err as { stderr?: string; code?: string; message: string };
    if (e.code === "ENOENT")
      throw new Error("network namespace tests need iproute2 and root: apt-get install iproute2");
    throw new Error(
      `ip ${args.join(" ")} failed: ${(e.stderr ?? e.message).trim()} (network namespace tests need root)`,
    );
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The pid in one of our names (`ifl<pid>-<n>` or `ifl<pid>-<n>h<k>`), else undefined. */
function ownerOf(name: string): number | undefined {
  const m = new RegExp(`^${PREFIX}(\\d+)-`).exec(name);
  return m ? Number(m[1]) : undefined;
}

/** Namespaces and links of ours whose process is gone (a crashed or killed test run). */
function removeStale(): void {
  for (const line of ip(["netns", "list"]).split("\n")) {
    const name = line.split(" ")[0];
    const pid = ownerOf(name);
    if (pid !== undefined && pid !== process.pid && !alive(pid)) {
      killInside(name);
      deleteNetns(name);
    }
  }
  for (const line of ip(["-o", "link", "show"]).split("\n")) {
    const name = /^\d+:\s+([^:@\s]+)/.exec(line)?.[1];
    const pid = name === undefined ? undefined : ownerOf(name);
    if (name !== undefined && pid !== undefined && pid !== process.pid && !alive(pid)) {
      try {
        ip(["link", "del", name]);
      } catch {}
    }
  }
}

function killInside(name: string): void {
  let pids: string[] = [];
  try {
    pids = ip(["netns", "pids", name]).split(/\s+/).filter(Boolean);
  } catch {}
  for (const p of pids) {
    try {
      process.kill(Number(p), "SIGKILL");
    } catch {}
  }
}

function deleteNetns(name: string): void {
  try {
    ip(["netns", "del", name]);
  } catch {}
}

const live = new Map<string, Netns>();
let counter = 0;
let checked = false;
let exitHook = false;

function usedAddresses(): Set<string> {
  const out = new Set<string>();
  for (const m of ip(["-4", "-o", "addr", "show"]).matchAll(/inet (\d+\.\d+\.\d+\.\d+)\//g)) out.add(m[1]);
  return out;
}

/** The n-th /30 of 198.18.0.0/15 as [host end, namespace end]. */
function subnet(index: number): [string, string] {
  const base = (198 << 24) + (18 << 16) + (index % SUBNETS) * 4;
  const dotted = (v: number) => [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join(".");
  return [dotted(base + 1), dotted(base + 2)];
}

let nextSubnet = (process.pid * PER_PID) % SUBNETS;

/** A namespace with `links` veth pairs to this one (default 1), each up and addressed. */
export function createNetns(opts: { links?: number } = {}): Netns {
  if (!checked) {
    if (process.platform !== "linux")
      throw new Error(`network namespace tests need Linux (this is ${process.platform})`);
    removeStale();
    checked = true;
  }
  if (!exitHook) {
    exitHook = true;
    process.once("exit", removeAllNetns);
  }
  const name = `${PREFIX}${process.pid}-${counter++}`;
  ip(["netns", "add", name]);
  const links: NetnsLink[] = [];
  const ns: Netns = {
    name,
    links,
    spawn(command, args, options = {}) {
      return spawn("ip", ["netns", "exec", name, command, ...args], {
        env: options.env ?? process.env,
        stdio: options.stdio ?? "ignore",
      });
    },
    remove() {
      if (!live.delete(name)) return;
      killInside(name);
      deleteNetns(name);
      for (let k = 0; k < links.length; k++) {
        try {
          ip(["link", "del", `${name}h${k}`]);
        } catch {}
      }
    },
  };
  live.set(name, ns);
  try {
    ip(["-n", name, "link", "set", "lo", "up"]);
    const taken = usedAddresses();
    for (let k = 0; k < (opts.links ?? 1); k++) {
      let host: string;
      let inside: string;
      do [host, inside] = subnet(nextSubnet++);
      while (taken.has(host) || taken.has(inside));
      // Interface names are at most 15 bytes: the host end `ifl<pid>-<n>h<k>`, the namespace end `v<k>`.
      const hostIf = `${name}h${k}`;
      const tempIf = `${name}n${k}`;
      ip(["link", "add", hostIf, "type", "veth", "peer", "name", tempIf]);
      ip(["link", "set", tempIf, "netns", name, "name", `v${k}`]);
      ip(["addr", "add", `${host}/30`, "dev", hostIf]);
      ip(["link", "set", hostIf, "up"]);
      ip(["-n", name, "addr", "add", `${inside}/30`, "dev", `v${k}`]);
      ip(["-n", name, "link", "set", `v${k}`, "up"]);
      let cut = false;
      links.push({
        hostAddress: host,
        nsAddress: inside,
        get isCut() {
          return cut;
        },
        cut() {
          ip(["-n", name, "link", "set", `v${k}`, "down"]);
          cut = true;
          return Date.now();
        },
        restore() {
          ip(["-n", name, "link", "set", `v${k}`, "up"]);
          // Connection attempts during the cut left the neighbour entries FAILED, which makes the next
          // connect fail EHOSTUNREACH at once until they expire: forget them on both ends.
          ip(["neigh", "flush", "dev", hostIf]);
          ip(["-n", name, "neigh", "flush", "dev", `v${k}`]);
          cut = false;
          return Date.now();
        },
      });
    }
  } catch (err) {
    ns.remove();
    throw err;
  }
  return ns;
}

/** Removes every namespace this process made (afterAll, and the exit hook). */
export function removeAllNetns(): void {
  for (const ns of [...live.values()]) ns.remove();
}

const TSX = createRequire(import.meta.url).resolve("tsx");

/**
 * A TypeScript entry (e.g. `inflora worker`) started inside `ns` that reports `{type: "listening",
 * address}` over IPC, as `forkWorker` in distributed.ts does on loopback.
 */
export function spawnInNetns(
  ns: Netns,
  script: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ address: string; child: ChildProcess }> {
  const child = ns.spawn(process.execPath, ["--import", TSX, script, ...args], {
    stdio: ["ignore", "ignore", "inherit", "ipc"],
    env: { ...process.env, INFLORA_PARENT_IPC: "1", INFLORA_LOG_LEVEL: "warn", ...env },
  });
  return listening(child, `process in ${ns.name}`);
}
