/**
 * `inflora watch`: a live terminal view of a run — task and epoch progress, loss, throughput, workers and
 * the accuracy matrix so far — from RUN_DIR/events.jsonl or from the run's NATS event stream. On a terminal
 * the view is redrawn in place; otherwise (a pipe, a log file, CI) every event worth a line is printed once.
 * Following ends when the run finishes, or on Ctrl-C.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import type { RunEvent } from "../coordinator/events.js";
import { RunDir } from "../coordinator/run_dir.js";
import { renderFrame } from "./watch_render.js";
import { applyEvent, emptyState, type WatchState } from "./watch_state.js";
import { tailLines } from "./watch_tail.js";

export class WatchError extends Error {
  override readonly name = "WatchError";
}

export interface WatchOutput {
  write(chunk: string): boolean;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

export interface WatchOptions {
  /** A run directory (with events.jsonl), or where run.json names the run id for `nats`. */
  runDir?: string;
  /** NATS URL: read the run's events from JetStream instead of the file. */
  nats?: string;
  /** Run id on NATS (default: run_id from RUN_DIR/run.json). */
  run?: string;
  /** Keep reading as events arrive (until the run finishes); otherwise show what is there and return. */
  follow: boolean;
  out?: WatchOutput;
  /** Stops following; without it, SIGINT and SIGTERM do. */
  signal?: AbortSignal;
  /** NATS without `follow`: return once no event arrived for this long (default 1000 ms). */
  idleMs?: number;
  /** Polling interval of events.jsonl while following (default 250 ms). */
  pollMs?: number;
}

/** Shows the run and resolves with its final state. */
export async function runWatch(opts: WatchOptions): Promise<WatchState> {
  const out: WatchOutput = opts.out ?? process.stdout;
  const { signal, dispose } = stopSignal(opts.signal);
  const view = out.isTTY ? new TtyView(out) : new PlainView(out);
  const state = emptyState();
  const onEvent = (e: RunEvent): boolean => {
    const line = applyEvent(state, e);
    view.update(state, line);
    return state.status !== "finished";
  };
  try {
    if (opts.nats) {
      const run = opts.run ?? runIdFrom(opts.runDir);
      view.source = `nats ${run}`;
      await watchNats(opts.nats, run, onEvent, opts, signal);
    } else {
      if (!opts.runDir)
        throw new WatchError("inflora watch needs a run directory or --nats URL with --run ID");
      const file = eventsFile(opts.runDir, opts.follow);
      view.source = file;
      await tailLines(file, {
        follow: opts.follow,
        signal,
        pollMs: opts.pollMs,
        onLine: (line) => {
          let e: RunEvent;
          try {
            e = JSON.parse(line) as RunEvent;
          } catch {
            return true; // a torn or foreign line: the next ones still count
          }
          return onEvent(e);
        },
      });
    }
  } finally {
    view.close(state);
    dispose();
  }
  return state;
}

function eventsFile(runDir: string, follow: boolean): string {
  const dir = new RunDir(runDir);
  const file = dir.eventsJsonl;
  if (existsSync(file) || (follow && dir.holdsRun())) return file;
  const seeds = existsSync(runDir)
    ? readdirSync(runDir).filter(
        (d) => /^seed-/.test(d) && existsSync(new RunDir(path.join(runDir, d)).eventsJsonl),
      )
    : [];
  if (seeds.length > 0) {
    throw new WatchError(
      `${runDir} holds one run per seed: watch one of ${seeds.map((d) => path.join(runDir, d)).join(", ")}`,
    );
  }
  // While following, the run may not have started yet: wait for its file.
  if (follow) return file;
  throw new WatchError(`${file} does not exist: is ${runDir} a run directory?`);
}

function runIdFrom(runDir: string | undefined): string {
  if (!runDir)
    throw new WatchError("--nats needs the run id: pass --run ID, or a run directory holding run.json");
  const file = new RunDir(runDir).runJson;
  try {
    const id = (JSON.parse(readFileSync(file, "utf8")) as { run_id?: unknown }).run_id;
    if (typeof id === "string" && id !== "") return id;
  } catch (err) {
    throw new WatchError(`cannot read the run id from ${file}: ${(err as Error).message}; pass --run ID`);
  }
  throw new WatchError(`${file} names no run_id; pass --run ID`);
}

async function watchNats(
  url: string,
  run: string,
  onEvent: (e: RunEvent) => boolean,
  opts: WatchOptions,
  signal: AbortSignal,
): Promise<void> {
  // Loaded only here: the file view must not need the NATS client.
  const { followRunEvents } = await import("../coordinator/events_nats.js");
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const idleMs = opts.idleMs ?? 1000;
  let idle: NodeJS.Timeout | undefined;
  const armIdle = () => {
    if (opts.follow) return;
    clearTimeout(idle);
    idle = setTimeout(finish, idleMs);
  };
  const handle = await followRunEvents(url, run, (e) => {
    if (!onEvent(e)) finish();
    armIdle();
  });
  armIdle();
  const onAbort = () => finish();
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    await Promise.race([finished, handle.done]);
  } finally {
    clearTimeout(idle);
    signal.removeEventListener("abort", onAbort);
    await handle.stop();
  }
}

function stopSignal(given: AbortSignal | undefined): { signal: AbortSignal; dispose: () => void } {
  if (given) return { signal: given, dispose: () => {} };
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  return {
    signal: ac.signal,
    dispose: () => {
      process.removeListener("SIGINT", stop);
      process.removeListener("SIGTERM", stop);
    },
  };
}

interface View {
  source: string;
  update(state: WatchState, line: string | undefined): void;
  close(state: WatchState): void;
}

/** One line per event worth a line: for pipes, logs and CI. */
class PlainView implements View {
  source = "";
  constructor(private readonly out: WatchOutput) {}

  update(_state: WatchState, line: string | undefined): void {
    if (line !== undefined) this.out.write(`${line}\n`);
  }

  close(): void {}
}

/** Redraws the frame in place, at most ten times a second. */
class TtyView implements View {
  source = "";
  private drawn = 0;
  private timer: NodeJS.Timeout | undefined;
  private latest: WatchState | undefined;

  constructor(private readonly out: WatchOutput) {}

  update(state: WatchState): void {
    this.latest = state;
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.draw();
    }, 100);
  }

  close(state: WatchState): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.latest = state;
    this.draw();
  }

  private draw(): void {
    if (!this.latest) return;
    const lines = renderFrame(this.latest, this.source, this.out.columns ?? 100);
    // Cursor up over the previous frame, clear to the end of the screen, draw the new one.
    const up = this.drawn > 0 ? `\x1b[${this.drawn}F\x1b[J` : "";
    this.out.write(`${up}${lines.join("\n")}\n`);
    this.drawn = lines.length;
  }
}
