/**
 * Run events to a JetStream stream, subject `inflora.<run>.<event>`, and the reader the live view uses.
 * Publishing is fire-and-forget from the trainer's point of view: an unreachable server costs a counted,
 * logged failure, never a stalled or crashed step.
 */
import {
  type ConsumerMessages,
  DiscardPolicy,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  StorageType,
} from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import { log } from "../common/log.js";
import { closeNats, connectNats, type NatsAuth, redactNatsUrl, withTimeout } from "../common/nats_connect.js";
import type { RunEvent } from "./events.js";

export const DEFAULT_EVENT_STREAM = "INFLORA_EVENTS";
const SUBJECT_ROOT = "inflora";
const DAY_MS = 24 * 3600 * 1000;

/**
 * A run id or event name as one subject token. Letters, digits, `-` and `_` pass through; every other byte
 * of the UTF-8 form becomes `=XX` (hex), so `.`, `*`, `>` and spaces cannot split or widen a subject and
 * distinct ids stay distinct (`a.b` → `a=2Eb`, `a_b` unchanged). The empty string becomes `=`.
 */
export function subjectToken(s: string): string {
  if (s === "") return "=";
  let out = "";
  for (const byte of Buffer.from(s, "utf8")) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9_-]/.test(c) ? c : `=${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

export function eventSubject(run: string, event: string): string {
  return `${SUBJECT_ROOT}.${subjectToken(run)}.${subjectToken(event)}`;
}

/** Creates the stream if missing, with only server-2.9 features; an existing stream is used as it is. */
export async function ensureEventStream(jsm: JetStreamManager, name: string): Promise<void> {
  try {
    const info = await jsm.streams.info(name);
    if (!info.config.subjects?.includes(`${SUBJECT_ROOT}.>`)) {
      log.warn(
        { stream: name, subjects: info.config.subjects },
        `event stream does not capture ${SUBJECT_ROOT}.>`,
      );
    }
    return;
  } catch (err) {
    if (!/stream not found/i.test(String(err))) throw err;
  }
  try {
    await jsm.streams.add({
      name,
      subjects: [`${SUBJECT_ROOT}.>`],
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      max_age: nanos(7 * DAY_MS),
      max_bytes: 1024 ** 3,
      max_msg_size: 1024 ** 2,
      num_replicas: 1,
      duplicate_window: nanos(2 * 60 * 1000),
      description: "inflora run events",
    });
  } catch (err) {
    // Another process created it in the meantime.
    if (!/already in use/i.test(String(err))) throw err;
  }
}

export interface NatsEventSink {
  /** For `EventLog.addSink`: returns at once, never throws. */
  sink: (e: RunEvent) => void;
  /** Waits for every publish started so far to be acknowledged or to fail. */
  flush(): Promise<void>;
  /** flush(), then disconnects; later events are counted as failures. */
  close(): Promise<void>;
  /** Events the stream did not acknowledge (no ack, timeout, dropped); a timed-out one may yet be stored. */
  failures(): number;
}

export interface NatsEventSinkOptions {
  url: string;
  auth?: NatsAuth;
  stream?: string;
  /** How long one publish waits for the stream's ack. */
  publishTimeoutMs?: number;
  /** Publishes in flight beyond this are dropped (and counted): a long outage must not grow memory. */
  maxPending?: number;
  /** Told of every event that failed (the coordinator's metric of them). */
  onFailure?: (e: RunEvent) => void;
}

export async function natsEventSink(opts: NatsEventSinkOptions): Promise<NatsEventSink> {
  const stream = opts.stream ?? DEFAULT_EVENT_STREAM;
  const shown = redactNatsUrl(opts.url);
  const timeout = opts.publishTimeoutMs ?? 5000;
  const maxPending = opts.maxPending ?? 10_000;
  const nc = await connectNats(opts.url, { auth: opts.auth, name: "inflora-events" });
  try {
    await ensureEventStream(await jetstreamManager(nc), stream);
  } catch (err) {
    await nc.close().catch(() => {});
    throw new Error(`cannot set up NATS event stream '${stream}' at ${shown}: ${String(err)}`, {
      cause: err,
    });
  }
  const js = jetstream(nc);
  const pending = new Set<Promise<void>>();
  let failed = 0;
  let streak = 0;
  let closed = false;

  const fail = (e: RunEvent, reason: string) => {
    failed++;
    try {
      opts.onFailure?.(e);
    } catch {}
    // One line per outage, not per event.
    if (streak++ === 0)
      log.warn({ url: shown, event: e.event, reason }, "publishing run events to NATS failed");
  };

  const sink = (e: RunEvent): void => {
    try {
      if (closed) {
        fail(e, "event sink closed");
        return;
      }
      if (pending.size >= maxPending) {
        fail(e, `${maxPending} publishes already pending`);
        return;
      }
      const p: Promise<void> = js
        .publish(eventSubject(e.run, e.event), JSON.stringify(e), { timeout })
        .then(() => {
          if (streak > 0)
            log.info({ url: shown, failures: failed }, "publishing run events to NATS works again");
          streak = 0;
        })
        .catch((err: unknown) => fail(e, String(err)))
        .finally(() => pending.delete(p));
      pending.add(p);
    } catch (err) {
      fail(e, String(err));
    }
  };

  const flush = async () => {
    while (pending.size > 0) await Promise.allSettled([...pending]);
  };

  return {
    sink,
    flush,
    async close() {
      if (closed) return;
      closed = true;
      await flush();
      await closeNats(nc);
      // A publish without an ack may still have been stored (the ack was what got lost), so "not
      // acknowledged" is what we can say; events.jsonl in the run directory has every event either way.
      if (failed > 0)
        log.warn(
          { url: shown, stream, failures: failed },
          "run events not acknowledged by the NATS event stream; events.jsonl has them all",
        );
    },
    failures: () => failed,
  };
}

export interface FollowOptions {
  auth?: NatsAuth;
  stream?: string;
}

export interface FollowHandle {
  stop(): Promise<void>;
  /** Settles when following ends: after stop(), or with an error if the consumer fails for good. */
  readonly done: Promise<void>;
}

/**
 * Delivers the run's events from its first one, in order, then live: an ordered consumer on
 * `inflora.<run>.>`. Ordered consumers are recreated by the client after a reconnect or a gap, so a server
 * restart shows as a pause. Creates the stream if missing, so a watcher may start before the run.
 */
export async function followRunEvents(
  url: string,
  runId: string,
  onEvent: (e: RunEvent, meta: { seq: number; subject: string }) => void,
  opts: FollowOptions = {},
): Promise<FollowHandle> {
  const stream = opts.stream ?? DEFAULT_EVENT_STREAM;
  const shown = redactNatsUrl(url);
  const nc = await connectNats(url, { auth: opts.auth, name: `inflora-watch-${runId}` });
  let messages: ConsumerMessages;
  try {
    await ensureEventStream(await jetstreamManager(nc), stream);
    const consumer = await jetstream(nc).consumers.get(stream, {
      filter_subjects: `${SUBJECT_ROOT}.${subjectToken(runId)}.>`,
    });
    messages = await consumer.consume();
  } catch (err) {
    await nc.close().catch(() => {});
    throw new Error(`cannot follow run '${runId}' on NATS stream '${stream}' at ${shown}: ${String(err)}`, {
      cause: err,
    });
  }
  const done = (async () => {
    for await (const m of messages) {
      let e: RunEvent;
      try {
        e = m.json<RunEvent>();
      } catch {
        log.warn({ subject: m.subject, seq: m.seq }, "skipping a run event that is not JSON");
        continue;
      }
      try {
        onEvent(e, { seq: m.seq, subject: m.subject });
      } catch (err) {
        log.error({ err, subject: m.subject, seq: m.seq }, "run event handler threw");
      }
    }
  })();
  // Callers that never await `done` must not get an unhandled rejection; those that do still see it.
  done.catch(() => {});
  return {
    done,
    async stop() {
      await withTimeout(messages.close(), 2000, "closing the event consumer").catch(() => {});
      await closeNats(nc);
      await done.catch(() => {});
    },
  };
}
