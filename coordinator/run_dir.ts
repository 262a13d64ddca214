/**
 * A run directory and every file in it (docs/design.md, "the run directory"):
 *
 *   run.json                            what ran: the resolved config, class order, model, versions
 *   metrics.json                        the accuracy curve and matrix so far
 *   events.jsonl                        the event stream, one JSON object a line
 *   split_manifest.json                 ImageNet-R's deterministic split, when the run made one
 *   checkpoints/task-XX.safetensors     the state after task XX
 *   checkpoints/progress.safetensors    the task in progress (removed when it finishes)
 *   predictions/task-XX.safetensors     the test predictions and logits after task XX
 *
 * The trainer and the command line (train, eval, export, watch) reach these files only through here.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { writeFileAtomic } from "../common/atomic_write.js";
import { checkpointName } from "./checkpoint.js";
import type { RunMetrics } from "./evaluation.js";
import { PROGRESS_FILE } from "./progress.js";

export class RunDir {
  constructor(readonly root: string) {}

  /** The run of `seed` under `out`: `out` itself, or `out/seed-N` when the config lists several seeds. */
  static forSeed(out: string, seed: number, seeds: number): RunDir {
    return new RunDir(seeds > 1 ? path.join(out, `seed-${seed}`) : out);
  }

  get runJson(): string {
    return path.join(this.root, "run.json");
  }

  get metricsJson(): string {
    return path.join(this.root, "metrics.json");
  }

  get eventsJsonl(): string {
    return path.join(this.root, "events.jsonl");
  }

  get splitManifest(): string {
    return path.join(this.root, "split_manifest.json");
  }

  get checkpoints(): string {
    return path.join(this.root, "checkpoints");
  }

  get progress(): string {
    return path.join(this.checkpoints, PROGRESS_FILE);
  }

  checkpoint(task: number): string {
    return path.join(this.checkpoints, checkpointName(task));
  }

  predictions(task: number): string {
    return path.join(this.root, "predictions", checkpointName(task));
  }

  /** A path relative to the run directory (for events). */
  relative(file: string): string {
    return path.relative(this.root, file);
  }

  /** Creates the folders the trainer writes into. */
  create(): void {
    mkdirSync(this.checkpoints, { recursive: true });
    mkdirSync(path.join(this.root, "predictions"), { recursive: true });
  }

  /** Whether a run was started here (its run.json exists). */
  holdsRun(): boolean {
    return existsSync(this.runJson);
  }

  /** The run id run.json records, if it can be read. */
  runId(): string | undefined {
    if (!this.holdsRun()) return undefined;
    try {
      return (JSON.parse(readFileSync(this.runJson, "utf8")) as { run_id?: string }).run_id;
    } catch {
      return undefined;
    }
  }

  /** Tasks with a checkpoint, ascending. */
  finishedTasks(): number[] {
    if (!existsSync(this.checkpoints)) return [];
    return readdirSync(this.checkpoints)
      .map((n) => /^task-(\d+)\.safetensors$/.exec(n))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
  }

  /** The last of the tasks 0, 1, … (at most `tasks`) whose checkpoints all exist; −1 for none. */
  lastFinishedTask(tasks: number): number {
    let last = -1;
    while (last + 1 < tasks && existsSync(this.checkpoint(last + 1))) last++;
    return last;
  }

  hasProgress(): boolean {
    return existsSync(this.progress);
  }

  removeProgress(): void {
    rmSync(this.progress, { force: true });
  }

  async writeRunJson(run: object): Promise<void> {
    await writeFileAtomic(this.runJson, `${JSON.stringify(run, null, 1)}\n`);
  }

  async writeMetrics(m: RunMetrics): Promise<void> {
    await writeFileAtomic(this.metricsJson, `${JSON.stringify(m, null, 1)}\n`);
  }

  readMetrics(): RunMetrics {
    return JSON.parse(readFileSync(this.metricsJson, "utf8")) as RunMetrics;
  }
}
