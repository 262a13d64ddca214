/**
 * `npm run demo`: (a) pretrain (or reuse) a small ViT on half of the embedded Fashion-MNIST training images,
 * (b) run InfLoRA over 5 tasks of 2 classes on the other half, (c) the sequential-LoRA and joint baselines
 * under the same harness, (d) write the report with its plots and return the table.
 */
import path from "node:path";
import { log } from "../common/log.js";
import { packageFile } from "../common/package_files.js";
import { selectBackend } from "../worker/backend.js";
import { ensureBackbone, STAND_IN_NOTE } from "./backbone.js";
import { DEMO_METHODS, writeMethodConfig } from "./methods.js";
import { createProgress, type Progress } from "./progress.js";
import { type DemoRuns, type DemoSummary, formatTable, writeReport } from "./report.js";
import { type MethodResult, runMethod } from "./run_method.js";
import { DEMO_SETTINGS, type DemoMode } from "./settings.js";
import { splitDemoData } from "./split_data.js";

export interface DemoOptions {
  readonly out: string;
  readonly mode: DemoMode;
  readonly workers: number;
  readonly backend?: string;
  readonly retrainBackbone?: boolean;
  readonly dataPath?: string;
  readonly configDir?: string;
  readonly progress?: Progress;
  /** Receives the lines a person should read while the demo runs (what the backbone is, where things go). */
  readonly say?: (line: string) => void;
}

export interface DemoResult extends DemoRuns {
  /** report.md, and the numbers it shows. */
  readonly report: string;
  readonly summary: DemoSummary;
  /** The results table as plain text. */
  readonly table: string;
}

/** Relative to the working folder when inside it, for messages. */
function shortPath(file: string): string {
  const rel = path.relative(process.cwd(), file);
  return rel.startsWith("..") ? file : rel;
}

export async function runDemo(opts: DemoOptions): Promise<DemoResult> {
  const started = performance.now();
  const settings = DEMO_SETTINGS[opts.mode];
  const progress = opts.progress ?? createProgress();
  const out = path.resolve(opts.out);
  // Chosen before pretraining, which would otherwise run on tfjs's default (pure JavaScript) backend.
  const backend = await selectBackend(opts.backend);
  log.info({ backend: backend.name, device: backend.device }, "compute backend");
  const split = await splitDemoData(opts.dataPath ?? packageFile("data", "demo"), path.join(out, "data"));
  const say = opts.say ?? ((line: string) => log.info(line));
  say(`Backbone: ${STAND_IN_NOTE}`);
  const backbone = await ensureBackbone({
    file: path.join(
      out,
      "backbone",
      opts.mode === "quick" ? "vit_demo_quick.safetensors" : "vit_demo.safetensors",
    ),
    recipe: settings.backbone,
    dataDir: split.pretrainDir,
    dataSha256: split.sourceSha256,
    classes: 10,
    progress,
    force: opts.retrainBackbone,
  });
  say(
    `Backbone ${backbone.cached ? "reused from the cache" : "pretrained"}: ${shortPath(backbone.file)}, ` +
      `its own 10-class head scores ${backbone.testAccuracy.toFixed(2)}% on the test split.`,
  );
  const methods: MethodResult[] = [];
  for (const method of DEMO_METHODS) {
    say(`${method.label}: ${method.description}.`);
    const config = await writeMethodConfig(
      opts.configDir ?? packageFile("configs"),
      method,
      { dataPath: split.continualDir, weights: backbone.file, epochs: settings.epochs },
      path.join(out, "configs"),
    );
    methods.push(
      await runMethod(method, config, path.join(out, method.key), {
        workers: opts.workers,
        backend: opts.backend,
        progress,
      }),
    );
  }
  const dataNote =
    `the embedded Fashion-MNIST subset (\`data/demo\`, 10 classes). The first half of every class's training images ` +
    `(${split.pretrainCount}) pretrains the backbone; the second half (${split.continualCount}, 300 a class) is the ` +
    "continual stream; all 1,000 test images (100 a class) evaluate. Each half is written as IDX files under `data/` here.";
  const partial = {
    backbone,
    methods,
    mode: opts.mode,
    backend: backend.name,
    workers: opts.workers,
    seconds: (performance.now() - started) / 1000,
  };
  const { report, summary } = await writeReport(out, partial, dataNote);
  return { ...partial, report, summary, table: formatTable(methods) };
}
