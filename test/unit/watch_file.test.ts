/** `runWatch` on RUN_DIR/events.jsonl: a finished run, a run being written (tail -f), a terminal. */
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { runWatch, type WatchOutput } from "../../cli/watch.js";
import { runEvents } from "./watch_events.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function runDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), "inflora-watch-"));
  dirs.push(d);
  return d;
}

function capture(isTTY: boolean): WatchOutput & { text: () => string } {
  let text = "";
  return {
    isTTY,
    columns: 100,
    write(chunk: string) {
      text += chunk;
      return true;
    },
    text: () => text,
  };
}

const ESC = String.fromCharCode(27);
const jsonl = (events: object[]) => events.map((e) => `${JSON.stringify(e)}\n`).join("");

describe("inflora watch on events.jsonl", () => {
  it("prints plain lines for a finished run when the output is not a terminal", async () => {
    const dir = runDir();
    writeFileSync(path.join(dir, "events.jsonl"), jsonl(runEvents()));
    const out = capture(false);
    const state = await runWatch({ runDir: dir, follow: false, out });
    expect(state.status).toBe("finished");
    const lines = out.text().trimEnd().split("\n");
    // 2 joins, the start, 5 lines per task, 1 failure, the end
    expect(lines).toHaveLength(20);
    expect(lines.at(-1)).toBe("run finished: final 91.42%, average 94.52%, forgetting 7.00, bwt -7.00");
    expect(out.text()).not.toContain("\x1b[");
  });

  it("follows a file as the run writes it, across torn lines, and stops when the run finishes", async () => {
    const dir = runDir();
    const file = path.join(dir, "events.jsonl");
    const events = runEvents();
    const out = capture(false);
    const ac = new AbortController();
    const watching = runWatch({ runDir: dir, follow: true, out, pollMs: 20, signal: ac.signal });
    const timeout = setTimeout(() => ac.abort(), 20_000);
    try {
      // The file does not exist yet: the watcher waits for it.
      await new Promise((r) => setTimeout(r, 60));
      for (const e of events) {
        const line = `${JSON.stringify(e)}\n`;
        const cut = Math.floor(line.length / 2);
        appendFileSync(file, line.slice(0, cut));
        await new Promise((r) => setTimeout(r, 5));
        appendFileSync(file, line.slice(cut));
      }
      const state = await watching;
      expect(ac.signal.aborted).toBe(false);
      expect(state.status).toBe("finished");
      expect(state.events).toBe(events.length);
      expect(out.text()).toContain(
        "task 3/3 finished: A_t 91.42%, task-aware 94.20%, per task [88.00 90.50 95.75]",
      );
    } finally {
      clearTimeout(timeout);
    }
  });

  it("stops following on the abort signal while the run is still going", async () => {
    const dir = runDir();
    writeFileSync(path.join(dir, "events.jsonl"), jsonl(runEvents().slice(0, 10)));
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 200);
    const state = await runWatch({
      runDir: dir,
      follow: true,
      out: capture(false),
      pollMs: 20,
      signal: ac.signal,
    });
    expect(state.status).toBe("running");
    expect(state.events).toBe(10);
  });

  it("redraws one frame in place on a terminal", async () => {
    const dir = runDir();
    writeFileSync(path.join(dir, "events.jsonl"), jsonl(runEvents().slice(0, 12)));
    const out = capture(true);
    const ac = new AbortController();
    const watching = runWatch({ runDir: dir, follow: true, out, pollMs: 20, signal: ac.signal });
    await new Promise((r) => setTimeout(r, 300));
    appendFileSync(path.join(dir, "events.jsonl"), jsonl(runEvents().slice(12)));
    const state = await watching;
    expect(state.status).toBe("finished");
    const text = out.text();
    // At least two frames, each later one starting by moving the cursor up over the previous one.
    expect(text).toMatch(new RegExp(`${ESC}\\[\\d+F${ESC}\\[J`));
    const last = text.slice(text.lastIndexOf("\x1b[J") + 3);
    expect(last).toContain("FINISHED");
    expect(last).toContain("accuracy matrix (%):");
    expect(last).toContain("workers 1 up, 2 in the last epoch  (10.0.0.8:50051 failed)");
  });

  it("explains what is wrong with the run directory", async () => {
    const dir = runDir();
    await expect(runWatch({ runDir: dir, follow: false, out: capture(false) })).rejects.toThrow(
      /events\.jsonl does not exist/,
    );
    mkdirSync(path.join(dir, "seed-0"));
    writeFileSync(path.join(dir, "seed-0", "events.jsonl"), "");
    await expect(runWatch({ runDir: dir, follow: false, out: capture(false) })).rejects.toThrow(
      /one run per seed/,
    );
    await expect(runWatch({ follow: false, out: capture(false) })).rejects.toThrow(/needs a run directory/);
    await expect(
      runWatch({ runDir: dir, nats: "nats://127.0.0.1:1", follow: false, out: capture(false) }),
    ).rejects.toThrow(/run id/);
  });

  it("skips lines that are not JSON", async () => {
    const dir = runDir();
    writeFileSync(path.join(dir, "events.jsonl"), `not json\n${jsonl(runEvents().slice(0, 3))}{"torn":`);
    const state = await runWatch({ runDir: dir, follow: false, out: capture(false) });
    expect(state.events).toBe(3);
  });
});
