/**
 * A run directory and every file in it (docs/design.md#run-directory):
 *
 *   run.json                            what ran: the resolved config, class order, model, versions
 *   metrics.json                        the accuracy curve and matrix so far
 *   events.jsonl                        the event stream, one JSON object a line
 *   split_manifest.json                 ImageNet-R's deterministic split, when the run made one
 *   checkpoints/task-XX.safetensors     the state after task XX
 *   checkpoints/progress.safetensors    the task in progress (removed when it finishes)
 *   predictions/task-XX.safetensors     the test predictions and logits after task XX
 *   class_stats/task-XX.safetensors     classifier alignment's class statistics after task XX
 *
 * The trainer and the command line (train, eval, export, watch) reach these files only through here.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { writeFileAtomic } from "../common/atomic_write.js";
import { DamagedFileError } from "../common/checked_safetensors.js";
import { log } from "../common/log.js";
import { type CheckpointState, checkpointName, readCheckpoint } from "./checkpoint.js";
import type { RunMetrics } from "./evaluation.js";
import { PROGRESS_FILE, readProgress, type TaskProgress } from "./progress.js";

/** What the files of a run must agree with to be resumed by this run. */
export interface ResumeCheck {
  readonly depth: number;
  readonly D: number;
  readonly rank: number;
  readonly configSha256: string;
  readonly classOrder: readonly number[];
}

/** A checkpoint or progress file whose checksum failed, which a resume passed over. */
export interface DamagedFile {
  /** Relative to the run directory. */
  readonly file: string;
  /** What is damaged: "header", `tensor "…"`, … */
  readonly where: string;
  readonly error: string;
  /** What the resume used instead, in words. */
  readonly fallback: string;
}

/** Everything a resume reads, after passing over damaged files (docs/design.md#resume). */
export interface ResumeState {
  /** The newest finished task with an intact checkpoint; −1 for none. */
  readonly last: number;
  readonly finished?: { state: CheckpointState; metrics: RunMetrics };
  /** The in-progress state of task `last + 1`, when one is saved and intact. */
  readonly progress?: TaskProgress;
  readonly damaged: DamagedFile[];
}

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

  classStats(task: number): string {
    return path.join(this.root, "class_stats", checkpointName(task));
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

  /**
   * What a resume continues from: the newest intact checkpoint of the unbroken sequence from task 0 and,
   * when it belongs to the next task and is intact, the progress file. A damaged file (its checksum or
   * structure fails) is passed over for the one before it, or for the task's start, and listed in
   * `damaged`; any other refusal (another config, another class order) still stops the resume.
   */
  async readResume(tasks: number, want: ResumeCheck): Promise<ResumeState> {
    const damaged: DamagedFile[] = [];
    const passOver = (err: unknown, fallback: string): void => {
      if (!(err instanceof DamagedFileError)) throw err;
      const file = this.relative(err.file);
      damaged.push({ file, where: err.where, error: err.message, fallback });
      log.warn({ file, where: err.where, fallback }, `damaged ${file} passed over: ${err.message}`);
    };
    let last = this.lastFinishedTask(tasks);
    let finished: ResumeState["finished"];
    for (; last >= 0; last--) {
      try {
        finished = await this.readFinished(last, want);
        break;
      } catch (err) {
        passOver(err, last > 0 ? `resuming from ${checkpointName(last - 1)}` : "starting the run afresh");
      }
    }
    let progress: TaskProgress | undefined;
    if (last + 1 < tasks) {
      try {
        progress = await this.readProgress(last + 1, want);
      } catch (err) {
        passOver(err, `starting task ${last + 1} from its first phase`);
      }
    }
    return { last, finished, progress, damaged };
  }

  /** The state after task `last` and the metrics up to it, refused when written for another run. */
  async readFinished(
    last: number,
    want: ResumeCheck,
  ): Promise<{ state: CheckpointState; metrics: RunMetrics }> {
    const file = this.checkpoint(last);
    const state = await readCheckpoint(file, { depth: want.depth, D: want.D });
    if (state.configSha256 !== want.configSha256) {
      throw new Error(
        `${file}: written for a different config (sha256 ${state.configSha256}, this config ${want.configSha256}); refusing to resume`,
      );
    }
    if (JSON.stringify(state.classOrder) !== JSON.stringify(want.classOrder)) {
      throw new Error(`${file}: class order differs from this run's; refusing to resume`);
    }
    const metrics = this.readMetrics();
    if (metrics.accuracy_matrix.length < last + 1) {
      throw new Error(
        `${this.metricsJson}: holds ${metrics.accuracy_matrix.length} tasks but the checkpoint is after task ${last}`,
      );
    }
    log.info({ file, task: last + 1 }, "resuming after the last finished task");
    return { state, metrics };
  }

  /** The in-progress state of `task`, if the previous coordinator saved one for it. */
  async readProgress(task: number, want: ResumeCheck): Promise<TaskProgress | undefined> {
    if (!this.hasProgress()) return undefined;
    const file = this.progress;
    const progress = await readProgress(file, { depth: want.depth, D: want.D });
    if (progress.configSha256 !== want.configSha256) {
      throw new Error(`${file}: written for a different config; refusing to resume`);
    }
    if (progress.task !== task) {
      log.warn({ file, progressTask: progress.task, task }, "ignoring progress state of another task");
      return undefined;
    }
    if (progress.rank !== want.rank)
      throw new Error(`${file}: rank ${progress.rank} differs from the config's`);
    log.info({ file, task, epoch: progress.epoch, step: progress.step }, "resuming inside the task");
    return progress;
  }
}
