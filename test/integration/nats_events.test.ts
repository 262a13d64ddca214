/**
 * Run events to JetStream against a real nats-server: subjects, order, the stream's limits, the follower
 * used by `inflora watch`, and a sink whose server has gone away.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectNats } from "../../common/nats_connect.js";
import { EventLog, type RunEvent } from "../../coordinator/events.js";
import {
  DEFAULT_EVENT_STREAM,
  eventSubject,
  followRunEvents,
  natsEventSink,
  subjectToken,
} from "../../coordinator/events_nats.js";
import { type NatsTestServer, startNatsServer } from "../helpers/nats_server.js";

let server: NatsTestServer;
let dir: string;

beforeAll(async () => {
  server = await startNatsServer();
  dir = mkdtempSync(path.join(tmpdir(), "inflora-events-"));
});
afterAll(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function until(cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

function emitRun(log: EventLog): void {
  log.emit("run_started", { tasks: 2 });
  for (let t = 0; t < 2; t++) {
    log.emit("task_started", { task: t });
    for (let e = 0; e < 3; e++) log.emit("epoch_finished", { task: t, epoch: e, loss: 1 / (e + 1) });
    log.emit("checkpoint_written", { task: t, file: `ckpt-${t}` });
    log.emit("task_finished", { task: t });
  }
  log.emit("run_finished", { accuracy: 0.5 });
}

describe("subject tokens", () => {
  it("keep safe ids readable and encode everything else reversibly", () => {
    expect(subjectToken("demo-run_01")).toBe("demo-run_01");
    expect(subjectToken("a.b")).toBe("a=2Eb");
    expect(subjectToken("a b*>")).toBe("a=20b=2A=3E");
    expect(subjectToken("a=b")).toBe("a=3Db");
    expect(subjectToken("é")).toBe("=C3=A9");
    expect(subjectToken("")).toBe("=");
    expect(subjectToken("a.b")).not.toBe(subjectToken("a_b"));
    expect(eventSubject("runs/2024.05 demo", "epoch_finished")).toBe(
      "inflora.runs=2F2024=2E05=20demo.epoch_finished",
    );
  });
});

describe("NATS event sink", () => {
  it("publishes every event, in order, on inflora.<run>.<event>, into a stream created with 2.9-safe limits", async () => {
    const run = "2026-01-02 tiny.v1";
    const events = new EventLog(path.join(dir, "a", "events.jsonl"), run);
    const nats = await natsEventSink({ url: server.url });
    events.addSink(nats.sink);
    emitRun(events);
    await nats.flush();
    expect(nats.failures()).toBe(0);

    const nc = await connectNats(server.url);
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(DEFAULT_EVENT_STREAM);
    expect(info.config.subjects).toEqual(["inflora.>"]);
    expect(info.config.storage).toBe("file");
    expect(info.config.max_age).toBe(7 * 24 * 3600 * 1e9);
    expect(info.state.messages).toBe(14);
    const first = await jsm.streams.getMessage(DEFAULT_EVENT_STREAM, { seq: info.state.first_seq });
    expect(first?.subject).toBe("inflora.2026-01-02=20tiny=2Ev1.run_started");
    expect(first?.json<RunEvent>()).toMatchObject({ run, event: "run_started", tasks: 2 });
    await nc.close();

    // A follower started after the run still sees all of it, from the first event, in order.
    const seen: RunEvent[] = [];
    const subjects: string[] = [];
    const follow = await followRunEvents(server.url, run, (e, meta) => {
      seen.push(e);
      subjects.push(meta.subject);
    });
    await until(() => seen.length === 14, 5000);
    expect(seen.map((e) => e.event)).toEqual([
      "run_started",
      ...[
        "task_started",
        "epoch_finished",
        "epoch_finished",
        "epoch_finished",
        "checkpoint_written",
        "task_finished",
      ],
      ...[
        "task_started",
        "epoch_finished",
        "epoch_finished",
        "epoch_finished",
        "checkpoint_written",
        "task_finished",
      ],
      "run_finished",
    ]);
    expect(seen.filter((e) => e.event === "epoch_finished").map((e) => e.epoch)).toEqual([0, 1, 2, 0, 1, 2]);
    expect(subjects.every((s) => s.startsWith("inflora.2026-01-02=20tiny=2Ev1."))).toBe(true);
    await follow.stop();
    await nats.close();
  });

  it("follows a run live and only that run", async () => {
    const seen: RunEvent[] = [];
    const follow = await followRunEvents(server.url, "live", (e) => seen.push(e));
    const nats = await natsEventSink({ url: server.url });
    const live = new EventLog(path.join(dir, "live", "events.jsonl"), "live");
    const other = new EventLog(path.join(dir, "other", "events.jsonl"), "live.other");
    live.addSink(nats.sink);
    other.addSink(nats.sink);
    other.emit("run_started");
    live.emit("run_started");
    other.emit("worker_joined", { worker: "w0" });
    live.emit("worker_joined", { worker: "w1" });
    live.emit("run_finished");
    await until(() => seen.length === 3, 5000);
    await new Promise((r) => setTimeout(r, 200));
    expect(seen.map((e) => [e.run, e.event])).toEqual([
      ["live", "run_started"],
      ["live", "worker_joined"],
      ["live", "run_finished"],
    ]);
    await follow.stop();
    await follow.done;
    await nats.close();
  });

  it("keeps training alive when the server is gone: no throw, no wait, failures counted", async () => {
    const own = await startNatsServer();
    const events = new EventLog(path.join(dir, "gone", "events.jsonl"), "gone");
    const nats = await natsEventSink({ url: own.url, publishTimeoutMs: 500 });
    events.addSink(nats.sink);
    events.emit("run_started");
    await nats.flush();
    expect(nats.failures()).toBe(0);

    await own.stop();
    const t0 = Date.now();
    for (let i = 0; i < 20; i++) events.emit("epoch_finished", { epoch: i });
    expect(Date.now() - t0).toBeLessThan(200);
    await nats.flush();
    expect(nats.failures()).toBe(20);
    const t1 = Date.now();
    await nats.close();
    expect(Date.now() - t1).toBeLessThan(3000);
    events.emit("run_finished");
    expect(nats.failures()).toBe(21);
  });

  it("publishes again once a restarted server is back", async () => {
    const own = await startNatsServer();
    const events = new EventLog(path.join(dir, "back", "events.jsonl"), "back");
    const nats = await natsEventSink({ url: own.url, publishTimeoutMs: 500 });
    events.addSink(nats.sink);
    await own.restart({ downMs: 300 });
    // The client retries once a second; give it time to come back.
    await new Promise((r) => setTimeout(r, 1500));
    events.emit("run_started");
    await nats.flush();
    expect(nats.failures()).toBe(0);
    await nats.close();
    const seen: RunEvent[] = [];
    const follow = await followRunEvents(own.url, "back", (e) => seen.push(e));
    await until(() => seen.length === 1, 5000);
    await follow.stop();
    await own.stop();
  });

  it("fails to start with an error naming the URL when nothing listens there", async () => {
    const own = await startNatsServer();
    const url = own.url;
    await own.stop();
    await expect(natsEventSink({ url })).rejects.toThrow(`cannot connect to NATS at ${url}`);
    await expect(followRunEvents(url, "r", () => {})).rejects.toThrow(`cannot connect to NATS at ${url}`);
  });
});
