/**
 * The demo's three methods, each a config under configs/ run by the same harness (`train`): InfLoRA, the
 * sequential-LoRA baseline (random B, no projection) and the joint-training upper bound (one task with
 * all ten classes).
 */
import { mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import { writeFileAtomic } from "../common/atomic_write.js";
import { ConfigError } from "../common/config.js";

export type MethodKey = "inflora" | "seqlora" | "joint";

export interface DemoMethod {
  readonly key: MethodKey;
  readonly label: string;
  /** The config template under configs/. */
  readonly template: string;
  readonly description: string;
}

export const DEMO_METHODS: readonly DemoMethod[] = [
  {
    key: "inflora",
    label: "InfLoRA",
    template: "demo_inflora.json",
    description: "designed B (DualGPM projection), trained A, one head per task",
  },
  {
    key: "seqlora",
    label: "Sequential LoRA",
    template: "demo_seqlora.json",
    description: "baseline: random B, no projection, A trained task after task",
  },
  {
    key: "joint",
    label: "Joint (upper bound)",
    template: "demo_joint.json",
    description: "all 10 classes as one task: what the continual methods aim for",
  },
];

export interface ConfigOverrides {
  readonly dataPath: string;
  readonly weights: string;
  /** Epochs of every task (quick mode); the template's otherwise. */
  readonly epochs?: number;
}

/**
 * Writes the config a method actually runs: the template with the demo's continual half, the pretrained
 * backbone and (quick mode) fewer epochs. Kept in the output folder so every run's `run.json` points at it.
 */
export async function writeMethodConfig(
  templateDir: string,
  method: DemoMethod,
  overrides: ConfigOverrides,
  outDir: string,
): Promise<string> {
  const template = path.join(templateDir, method.template);
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(await readFile(template, "utf8")) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(`${template}: cannot read the demo config (${(err as Error).message})`);
  }
  json.data_path = overrides.dataPath;
  json.weights = overrides.weights;
  if (overrides.epochs !== undefined) {
    json.init_epoch = overrides.epochs;
    json.epochs = overrides.epochs;
  }
  await mkdir(outDir, { recursive: true });
  const file = path.join(outDir, `${method.key}.json`);
  await writeFileAtomic(file, `${JSON.stringify(json, null, 1)}\n`);
  return file;
}
