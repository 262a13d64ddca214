/**
 * The run configuration: every key of the reference's configs/*.json with its meaning there, plus our own
 * keys (docs/design.md#config). Unknown keys are an error naming the key and the file.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { z } from "zod";

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/** Reference keys that do not apply to this trainer: accepted and ignored. */
export const IGNORED_KEYS = [
  "prefix",
  "memory_size",
  "memory_per_class",
  "fixed_memory",
  "EPSILON",
  "num_workers",
  "init_lr_decay",
  "net_type",
  "device",
  "topk",
] as const;

/**
 * Variants this trainer runs (reference names; `SeqLoRA` is the sequential-LoRA baseline; the `_CA`
 * variants add classifier alignment).
 */
export const MODEL_NAMES = [
  "InfLoRA",
  "InfLoRA_domain",
  "InfLoRAb5",
  "InfLoRAb5_domain",
  "InfLoRA_CA",
  "InfLoRA_CA1",
  "SeqLoRA",
] as const;

const positiveInt = z.number().int().positive();
const nonNegative = z.number().nonnegative();

const schema = z.strictObject({
  // reference keys
  dataset: z.enum(["cifar100", "imagenet_r", "ImageNet_R", "domainnet", "folder", "idx"]),
  data_path: z.string().min(1),
  shuffle: z.boolean().default(false),
  init_cls: positiveInt,
  increment: positiveInt,
  total_sessions: positiveInt,
  seed: z.union([z.number().int().nonnegative(), z.array(z.number().int().nonnegative()).min(1)]).default(0),
  model_name: z.enum(MODEL_NAMES).default("InfLoRA"),
  optim: z.enum(["adam", "sgd"]).default("adam"),
  init_epoch: positiveInt.optional(),
  init_lr: z.number().positive().optional(),
  init_weight_decay: nonNegative.optional(),
  epochs: positiveInt,
  lrate: z.number().positive(),
  weight_decay: nonNegative.default(0),
  fc_lrate: z.number().positive().optional(),
  /** The multiplier of a step schedule (InfLoRA_CA1's MultiStepLR); the cosine schedules ignore it. */
  lrate_decay: z.number().positive().optional(),
  batch_size: positiveInt,
  rank: positiveInt,
  lamb: z.number().min(0).max(1),
  lame: z.number().min(0).max(1),
  embd_dim: positiveInt.optional(),
  num_heads: positiveInt.optional(),
  // our keys
  weights: z.string().min(1),
  img_size: positiveInt.optional(),
  patch_size: positiveInt.optional(),
  depth: positiveInt.optional(),
  data_order: z.enum(["shuffle", "class_sorted", "interleaved"]).default("shuffle"),
  augment: z.boolean().default(true),
  head_init: z.enum(["torch", "zeros"]).default("torch"),
  micro_shards: positiveInt.default(4),
  covariance_shard_images: positiveInt.default(512),
  eval_batch_size: positiveInt.optional(),
  checkpoint_every: z.union([z.literal("epoch"), z.literal("task"), positiveInt]).default("epoch"),
  normalize_mean: z.array(z.number()).length(3).optional(),
  normalize_std: z.array(z.number().positive()).length(3).optional(),
  on_bad_image: z.enum(["error", "skip"]).default("error"),
  ...Object.fromEntries(IGNORED_KEYS.map((k) => [k, z.unknown().optional()])),
});

export type RawConfig = z.infer<typeof schema>;

/** The resolved configuration: paths absolute, reference defaults filled in. */
export interface RunConfig extends Omit<RawConfig, "seed" | "init_epoch" | "init_lr" | "init_weight_decay"> {
  readonly seeds: number[];
  readonly init_epoch: number;
  readonly init_lr: number;
  readonly init_weight_decay: number;
  readonly eval_batch_size: number;
  /** The config file (absolute), for error messages. */
  readonly file: string;
  /** The folder relative paths were resolved against. */
  readonly configDir: string;
  /** Lowercase hex SHA-256 of the config file's bytes (or of the JSON text given). */
  readonly sha256: string;
  /** The file's own text, kept verbatim for the run directory. */
  readonly source: string;
}

/** Parses a config from its JSON text; `file` names it in errors and anchors relative paths. */
export function parseConfig(text: string, file: string): RunConfig {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new ConfigError(`${file}: the config must be a JSON object`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => {
      if (issue.code === "unrecognized_keys") {
        return `unknown key${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => `"${k}"`).join(", ")}`;
      }
      const where = issue.path.length ? `key "${issue.path.join(".")}"` : "config";
      return `${where}: ${issue.message}`;
    });
    throw new ConfigError(`${file}: ${lines.join("; ")}`);
  }
  const c = parsed.data;
  if ((c.normalize_mean === undefined) !== (c.normalize_std === undefined)) {
    throw new ConfigError(`${file}: keys "normalize_mean" and "normalize_std" must be given together`);
  }
  if (c.lamb > c.lame)
    throw new ConfigError(`${file}: key "lamb" (${c.lamb}) must not exceed "lame" (${c.lame})`);
  const configDir = path.dirname(path.resolve(file));
  const resolve = (p: string) => (path.isAbsolute(p) ? p : path.resolve(configDir, p));
  const { seed, ...rest } = c;
  return {
    ...rest,
    data_path: resolve(c.data_path),
    weights: resolve(c.weights),
    seeds: Array.isArray(seed) ? seed : [seed],
    init_epoch: c.init_epoch ?? c.epochs,
    init_lr: c.init_lr ?? c.lrate,
    init_weight_decay: c.init_weight_decay ?? c.weight_decay,
    eval_batch_size: c.eval_batch_size ?? c.batch_size,
    file: path.resolve(file),
    configDir,
    sha256: createHash("sha256").update(text).digest("hex"),
    source: text,
  };
}

export function loadConfig(file: string): RunConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(`${file}: cannot read the config (${(err as NodeJS.ErrnoException).code ?? err})`);
  }
  return parseConfig(text, file);
}

/** Per-task hyperparameters: task 0 uses the init_* values, as the reference does. */
export function taskHyper(cfg: RunConfig, task: number): { epochs: number; lr: number; weightDecay: number } {
  return task === 0
    ? { epochs: cfg.init_epoch, lr: cfg.init_lr, weightDecay: cfg.init_weight_decay }
    : { epochs: cfg.epochs, lr: cfg.lrate, weightDecay: cfg.weight_decay };
}
