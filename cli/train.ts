/** `inflora train`: one run per seed, coordinator and workers wired together. */
import { randomUUID } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { loadConfig, type RunConfig } from "../common/config.js";
import { openDatasetIndex } from "../common/data/open_index.js";
import type { DataOptions } from "../common/data/options.js";
import { log } from "../common/log.js";
import type { ModelSpec, WorkerClient } from "../common/protocol.js";
import type { RunMetrics } from "../coordinator/evaluation.js";
import { Trainer, type TrainerInput } from "../coordinator/trainer.js";
import { WorkerPool } from "../coordinator/worker_pool.js";
import { selectBackend } from "../worker/backend.js";
import { WorkerEngine } from "../worker/engine.js";
import { describeWeights } from "../worker/model/load_weights.js";

export class RunDirError extends Error {
  override readonly name = "RunDirError";
}

export interface TrainOptions {
  readonly config: string;
  readonly out: string;
  readonly workers: number;
  readonly backend?: string;
  readonly resume: boolean;
  /** Called after every training step (progress bars; tests use it to interrupt a run). */
  readonly onStep?: TrainerInput["onStep"];
  /** Called with each seed's trainer before it runs (progress views). */
  readonly onTrainer?: (trainer: Trainer, seed: number) => void;
}

export function dataOptions(cfg: RunConfig, imageSize: number, runDir: string): DataOptions {
  return {
    dataset: cfg.dataset,
    dataPath: cfg.data_path,
    imageSize,
    mean: cfg.normalize_mean,
    std: cfg.normalize_std,
    onBadImage: cfg.on_bad_image,
    manifestPath: path.join(runDir, "split_manifest.json"),
  };
}

function versions(): Record<string, string> {
  const require = createRequire(import.meta.url);
  const v = (pkg: string) => {
    try {
      return (require(`${pkg}/package.json`) as { version: string }).version;
    } catch {
      return "absent";
    }
  };
  const own = (require("../package.json") as { version: string }).version;
  return { inflora: own, node: process.version, "tfjs-core": v("@tensorflow/tfjs-core") };
}

/** A resumed run keeps its id, so its events stay on the same NATS subjects. */
function previousRunId(runDir: string, resume: boolean): string | undefined {
  const file = path.join(runDir, "run.json");
  if (!resume || !existsSync(file)) return undefined;
  try {
    return (JSON.parse(readFileSync(file, "utf8")) as { run_id?: string }).run_id;
  } catch {
    return undefined;
  }
}

export async function train(opts: TrainOptions): Promise<Map<number, RunMetrics>> {
  const cfg = loadConfig(opts.config);
  const backend = await selectBackend(opts.backend);
  log.info({ backend: backend.name, device: backend.device, skipped: backend.skipped }, "compute backend");
  const weights = await describeWeights(cfg.weights, {
    imgSize: cfg.img_size,
    patchSize: cfg.patch_size,
    depth: cfg.depth,
    embedDim: cfg.embd_dim,
    numHeads: cfg.num_heads,
  });
  const model: ModelSpec = { ...weights.cfg };
  const results = new Map<number, RunMetrics>();
  for (const seed of cfg.seeds) {
    const runDir = cfg.seeds.length > 1 ? path.join(opts.out, `seed-${seed}`) : opts.out;
    if (!opts.resume && existsSync(path.join(runDir, "run.json"))) {
      throw new RunDirError(
        `${runDir} already holds a run; pass --resume to continue it, or choose another --out`,
      );
    }
    const data = dataOptions(cfg, model.imgSize, runDir);
    const index = await openDatasetIndex(data);
    const clients: WorkerClient[] = Array.from(
      { length: opts.workers },
      (_, k) => new WorkerEngine({ backend: backend.name, name: `in-process-${k}` }),
    );
    const pool = new WorkerPool(clients);
    try {
      const trainer = new Trainer({
        cfg,
        seed,
        runDir,
        runId: previousRunId(runDir, opts.resume) ?? randomUUID(),
        index,
        model,
        weightsFingerprint: weights.fingerprint,
        data,
        pool,
        resume: opts.resume,
        backend: backend.name,
        versions: versions(),
        onStep: opts.onStep,
      });
      opts.onTrainer?.(trainer, seed);
      results.set(seed, await trainer.run());
    } finally {
      await pool.close();
    }
  }
  return results;
}
