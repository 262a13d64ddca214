/**
 * The fault tests' own figures (issue #15's table in docs/operations.md): each fault test records what it
 * tried and what happened, one JSON file per fault under runs/fault-table/, and `npm run faults:table`
 * renders them into the table. The rows are what the tests measured, never typed in by hand.
 */
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";

export const FAULT_TABLE_DIR = path.resolve(import.meta.dirname, "../../runs/fault-table");

export interface FaultRow {
  /** What was done to the run, e.g. "worker partitioned (netns) during a training step". */
  readonly fault: string;
  /** How many times the test injected it. */
  readonly tried: number;
  /** How many of those the run finished. */
  readonly survived: number;
  /** How many of those finished bit-identical to the clean run; null where the test has no clean run. */
  readonly bitIdentical: number | null;
  /** From the fault to the system acting on it (ms), the worst case seen; null where nothing is detected. */
  readonly detectionMs: number | null;
  /** Optional: how it was detected or what the run said, one short phrase. */
  readonly detail?: string;
}

function slug(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-|-$/g, "")
    .slice(0, 80);
}

/** Writes (or replaces) this fault's row; a temp file and a rename, so a reader never sees half a row. */
export function recordFault(row: FaultRow): void {
  mkdirSync(FAULT_TABLE_DIR, { recursive: true });
  const file = path.join(FAULT_TABLE_DIR, `${slug(row.fault)}.json`);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify({ ...row, recordedAt: new Date().toISOString() }, null, 1)}\n`);
  renameSync(tmp, file);
}
