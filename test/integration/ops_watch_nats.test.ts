/** `inflora watch --nats`: the live view fed from the run's JetStream events on a real nats-server. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runWatch, type WatchOutput } from "../../cli/watch.js";
import { natsEventSink } from "../../coordinator/events_nats.js";
import { type NatsTestServer, startNatsServer } from "../helpers/nats_server.js";
import { runEvents } from "../unit/watch_events.js";

let server: NatsTestServer;
let dir: string;

beforeAll(async () => {
  server = await startNatsServer();
  dir = mkdtempSync(path.join(tmpdir(), "inflora-watch-nats-"));
});
afterAll(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function capture(): WatchOutput & { lines: () => string[] } {
  let text = "";
  return {
    isTTY: false,
    write(chunk: string) {
      text += chunk;
      return true;
    },
    lines: () => text.trimEnd().split("\n"),
  };
}

async function publish(events: ReturnType<typeof runEvents>): Promise<void> {
  const sink = await natsEventSink({ url: server.url });
  for (const e of events) sink.sink(e);
  await sink.close();
  expect(sink.failures()).toBe(0);
}

describe("inflora watch --nats", () => {
  it("follows a run live, from its first event to run_finished", async () => {
    const run = "watch-live-run";
    const events = runEvents(run);
    await publish(events.slice(0, 8)); // the run has started before the watcher
    const out = capture();
    const watching = runWatch({ nats: server.url, run, follow: true, out });
    await new Promise((r) => setTimeout(r, 300));
    await publish(events.slice(8));
    const state = await watching;
    expect(state.status).toBe("finished");
    expect(state.events).toBe(events.length);
    expect(state.matrix).toEqual([[98.5], [91.25, 96], [88, 90.5, 95.75]]);
    expect(out.lines().at(-1)).toBe("run finished: final 91.42%, average 94.52%, forgetting 7.00, bwt -7.00");
  });

  it("shows what is there and returns without --follow, taking the run id from run.json", async () => {
    const run = "watch-snapshot-run";
    await publish(runEvents(run).slice(0, 20));
    writeFileSync(path.join(dir, "run.json"), JSON.stringify({ run_id: run }));
    const out = capture();
    const state = await runWatch({ nats: server.url, runDir: dir, follow: false, out, idleMs: 500 });
    expect(state.status).toBe("running");
    expect(state.events).toBe(20);
    expect(state.run).toBe(run);
    expect(out.lines()).toContain("task 1/3 finished: A_t 98.50%, task-aware 98.50%, per task [98.50]");
  });
});
