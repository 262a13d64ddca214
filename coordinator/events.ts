/**
 * The run's event stream: one JSON object a line in RUN_DIR/events.jsonl, and any extra sinks (NATS
 * JetStream, the live view) registered by the caller.
 */
import { mkdirSync } from "node:fs";
import path from "node:path";
import { appendLineSync } from "../common/atomic_write.js";

export type EventName =
  | "run_started"
  | "run_finished"
  | "run_failed"
  | "task_started"
  | "task_finished"
  | "phase_started"
  | "epoch_started"
  | "epoch_finished"
  | "checkpoint_written"
  | "checkpoint_damaged"
  | "alignment_epoch"
  | "alignment_finished"
  | "worker_joined"
  | "worker_left"
  | "worker_failed"
  | "shards_reissued"
  | "reissue_settled";

export interface RunEvent {
  readonly time: string;
  readonly run: string;
  readonly event: EventName;
  readonly [field: string]: unknown;
}

export type EventSink = (event: RunEvent) => void;

export class EventLog {
  private readonly sinks: EventSink[] = [];

  constructor(
    private readonly file: string,
    private readonly run: string,
  ) {
    mkdirSync(path.dirname(file), { recursive: true });
  }

  addSink(sink: EventSink): void {
    this.sinks.push(sink);
  }

  emit(event: EventName, fields: Record<string, unknown> = {}): RunEvent {
    const e: RunEvent = { time: new Date().toISOString(), run: this.run, event, ...fields };
    // Appended synchronously: a crash right after an event must not lose it.
    appendLineSync(this.file, `${JSON.stringify(e)}\n`);
    for (const sink of this.sinks) sink(e);
    return e;
  }
}
