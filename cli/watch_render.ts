/** Renders a WatchState as the lines of a terminal frame: progress, training, workers, accuracy matrix. */
import { summary, type WatchState } from "./watch_state.js";

function bar(done: number, total: number, width = 20): string {
  const filled = total > 0 ? Math.round((Math.min(done, total) / total) * width) : 0;
  return `[${"#".repeat(filled)}${"-".repeat(width - filled)}]`;
}

const fmt = (v: number | undefined, digits: number, suffix = ""): string =>
  v === undefined || Number.isNaN(v) ? "-" : `${v.toFixed(digits)}${suffix}`;

export function renderFrame(s: WatchState, source: string, width = 100): string[] {
  const lines: string[] = [];
  const runId = s.run ? (s.run.length > 13 ? `${s.run.slice(0, 12)}…` : s.run) : "(waiting for events)";
  lines.push(`inflora run ${runId}  seed ${s.seed ?? "-"}  ${s.status.toUpperCase()}  ${source}`);
  if (s.error) lines.push(`error: ${s.error}`);
  const tasks = s.tasks ?? 0;
  const tasksDone = s.matrix.filter((r) => r !== undefined).length;
  const taskNo = s.status === "finished" ? tasks : (s.task ?? 0) + 1;
  lines.push(
    `task  ${String(taskNo).padStart(3)}/${tasks || "?"} ${bar(tasksDone, tasks)}  phase ${s.phase ?? "-"}`,
  );
  if (s.epochs !== undefined) {
    const epochsDone = s.phase === "TRAIN" || s.phase === undefined ? (s.epoch ?? -1) + 1 : s.epochs;
    lines.push(
      `epoch ${String(Math.min(epochsDone, s.epochs)).padStart(3)}/${s.epochs} ${bar(epochsDone, s.epochs)}`,
    );
  }
  lines.push(
    `loss ${fmt(s.loss, 4)}  train acc ${fmt(s.trainAccuracy, 2, "%")}  lr ${s.lr === undefined ? "-" : s.lr.toExponential(2)}  ` +
      `${fmt(s.imagesPerSecond, 1)} img/s  epoch ${fmt(s.epochSeconds, 1, " s")}`,
  );
  const up = [...s.workers.values()].filter((w) => w.status === "up").length;
  const down = [...s.workers.entries()].filter(([, w]) => w.status !== "up");
  const downText = down.length
    ? `  (${down
        .slice(-3)
        .map(([id, w]) => `${id} ${w.status}`)
        .join(", ")}${down.length > 3 ? ", …" : ""})`
    : "";
  lines.push(
    `workers ${up} up${s.workersInUse !== undefined ? `, ${s.workersInUse} in the last epoch` : ""}${downText}`,
  );
  lines.push(...renderMatrix(s));
  if (s.result) {
    const r = s.result;
    lines.push(
      `final ${fmt(r.final, 2, "%")}  average ${fmt(r.average, 2, "%")}  forgetting ${fmt(r.forgetting ?? undefined, 2)}  bwt ${fmt(r.bwt ?? undefined, 2)}`,
    );
  } else {
    const { average, forgetting } = summary(s);
    if (average !== undefined)
      lines.push(`average so far ${fmt(average, 2, "%")}  forgetting so far ${fmt(forgetting, 2)}`);
  }
  return lines.map((l) => (l.length > width ? `${l.slice(0, width - 1)}…` : l));
}

/** Rows: after task t; columns: accuracy on task s, then A_t and the task-aware accuracy. */
export function renderMatrix(s: WatchState): string[] {
  const T = s.matrix.length;
  if (T === 0) return ["accuracy matrix: no task evaluated yet"];
  const cell = (v: number | undefined) => (v === undefined ? "".padStart(6) : v.toFixed(1).padStart(6));
  const header = `${"after".padEnd(7)}${Array.from({ length: T }, (_, t) => `t${t + 1}`.padStart(6)).join("")}   A_t    aware`;
  const rows = s.matrix.map((row, t) => {
    const cells = Array.from({ length: T }, (_, c) => cell(row?.[c])).join("");
    return `${`t${t + 1}`.padEnd(7)}${cells}  ${cell(s.cil[t])}  ${cell(s.withTask[t])}`;
  });
  return ["accuracy matrix (%):", header, ...rows];
}
