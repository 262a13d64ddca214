/**
 * `npm run faults:table`: renders the rows the fault tests recorded (test/helpers/fault_table.ts) into the
 * table of docs/operations.md, between its fault-table markers, and prints it.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { writeFileAtomic } from "../common/atomic_write.js";
import { FAULT_TABLE_DIR, type FaultRow } from "../test/helpers/fault_table.js";

const DOC = path.resolve(import.meta.dirname, "../docs/operations.md");
const BEGIN = "<!-- fault-table:begin (npm run faults:table) -->";
const END = "<!-- fault-table:end -->";

function rows(): FaultRow[] {
  let files: string[];
  try {
    files = readdirSync(FAULT_TABLE_DIR).filter((f) => f.endsWith(".json"));
  } catch {
    throw new Error(`no fault rows in ${FAULT_TABLE_DIR}: run the fault tests first (npm test)`);
  }
  return files.map((f) => JSON.parse(readFileSync(path.join(FAULT_TABLE_DIR, f), "utf8")) as FaultRow);
}

function cell(v: number | null, unit = ""): string {
  return v === null ? "–" : `${v}${unit}`;
}

export function renderFaultTable(list: FaultRow[]): string {
  const lines = [
    "| fault | tried | survived | bit-identical | detection time |",
    "|---|---:|---:|---:|---:|",
  ];
  for (const r of [...list].sort((a, b) => a.fault.localeCompare(b.fault))) {
    const detect = r.detectionMs === null ? "–" : `${(r.detectionMs / 1000).toFixed(1)} s`;
    const fault = r.detail ? `${r.fault} (${r.detail})` : r.fault;
    lines.push(`| ${fault} | ${r.tried} | ${r.survived} | ${cell(r.bitIdentical)} | ${detect} |`);
  }
  return lines.join("\n");
}

const table = renderFaultTable(rows());
const doc = readFileSync(DOC, "utf8");
const at = doc.indexOf(BEGIN);
const end = doc.indexOf(END);
if (at < 0 || end < at) throw new Error(`${DOC}: the markers ${BEGIN} … ${END} are missing`);
await writeFileAtomic(DOC, `${doc.slice(0, at + BEGIN.length)}\n${table}\n${doc.slice(end)}`);
console.log(table);
