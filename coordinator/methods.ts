/**
 * The methods this trainer runs, as data (docs/design.md#methods). Each names its design of B, its
 * memory of earlier tasks, its optimizer recipe and its extra phases; the trainer walks the phase table
 * built from it and never tests a method's name.
 */
import type { MODEL_NAMES, RunConfig } from "../common/config.js";
import type { FinalNorm } from "../common/vit_config.js";
import type { OptimizerRecipe } from "./optim/recipe.js";

export type ModelName = (typeof MODEL_NAMES)[number];

/** Every phase any method passes through, in the order a task meets them (metrics list them all). */
export const PHASES = [
  "COVARIANCE_PRE",
  "DESIGN",
  "TRAIN",
  "COVARIANCE_POST",
  "DUALGPM",
  "CLASS_STATS",
  "EVAL_BEFORE_ALIGNMENT",
  "ALIGNMENT",
  "EVAL",
  "CHECKPOINT",
] as const;

export type Phase = (typeof PHASES)[number];

/**
 * How B_t is chosen before task t:
 * - `projected`: from the input covariance, projected away from (or into) the memory (paper Eq. 7);
 * - `random`: nn.Linear's initialisation, U(±1/√D), no covariance at all (sequential LoRA).
 */
export type BDesign = "projected" | "random";

/**
 * What the method remembers of earlier tasks' inputs after each task:
 * - `DualGPM`: per layer a basis of the removed or the retained space (paper section 3.3);
 * - `GPM`: always the removed space (the reference's InfLoRAb5, its `update_GPM`);
 * - `none`: nothing, so no covariance after training.
 */
export type Memory = "DualGPM" | "GPM" | "none";

type Dataset = RunConfig["dataset"];

/**
 * Classifier alignment (docs/design.md#classifier-alignment): after each task the heads are retrained on features
 * sampled from per-class Gaussians. `logitNorm` is the temperature of the normalised logits, null for
 * plain cross-entropy; `logitNormOn` overrides it per dataset, as the reference decides it.
 */
export interface Alignment {
  readonly logitNorm: number | null;
  readonly logitNormOn?: Partial<Record<Dataset, number | null>>;
}

export interface Method {
  readonly name: ModelName;
  readonly design: BDesign;
  readonly memory: Memory;
  readonly optimizer: OptimizerRecipe;
  /** Phases of the method's own, run after the memory update and before evaluation. */
  readonly extraPhases: readonly Phase[];
  /** Present for the methods with an ALIGNMENT phase. */
  readonly alignment?: Alignment;
  /** The final LayerNorm per dataset, where it is not the pretrained one. */
  readonly finalNormOn?: Partial<Record<Dataset, FinalNorm>>;
}

const inflora = { design: "projected", memory: "DualGPM", optimizer: "reference", extraPhases: [] } as const;
const inflorab5 = { ...inflora, memory: "GPM" } as const;
/** The reference's InfLoRA_CA and InfLoRA_CA1: InfLoRAb5's memory and design, then class statistics and alignment. */
const aligned = {
  ...inflorab5,
  extraPhases: ["CLASS_STATS", "EVAL_BEFORE_ALIGNMENT", "ALIGNMENT"],
} as const;

/**
 * The reference's `_domain` entry points run DomainNet through the same algorithm as their base method;
 * only their name differs.
 */
export const METHODS: { readonly [N in ModelName]: Method } = {
  InfLoRA: { name: "InfLoRA", ...inflora },
  InfLoRA_domain: { name: "InfLoRA_domain", ...inflora },
  InfLoRAb5: { name: "InfLoRAb5", ...inflorab5 },
  InfLoRAb5_domain: { name: "InfLoRAb5_domain", ...inflorab5 },
  InfLoRA_CA: {
    name: "InfLoRA_CA",
    ...aligned,
    alignment: { logitNorm: 0.1, logitNormOn: { cifar100: null } },
  },
  InfLoRA_CA1: {
    name: "InfLoRA_CA1",
    ...aligned,
    optimizer: "ca1",
    alignment: { logitNorm: 0.1 },
    finalNormOn: { cifar100: "fresh" },
  },
  SeqLoRA: { name: "SeqLoRA", design: "random", memory: "none", optimizer: "reference", extraPhases: [] },
};

export function methodOf(cfg: Pick<RunConfig, "model_name">): Method {
  return METHODS[cfg.model_name];
}

/** The alignment's logit temperature on `dataset` (null: plain cross-entropy); undefined without alignment. */
export function logitNormOf(method: Method, dataset: Dataset): number | null | undefined {
  const a = method.alignment;
  if (!a) return undefined;
  const on = a.logitNormOn?.[dataset];
  return on === undefined ? a.logitNorm : on;
}

/** The final LayerNorm the workers use on `dataset`. */
export function finalNormOf(method: Method, dataset: Dataset): FinalNorm {
  return method.finalNormOn?.[dataset] ?? "pretrained";
}

/** The phases of one task under `method`, in order. */
export function taskPhases(method: Method): Phase[] {
  return [
    ...(method.design === "projected" ? (["COVARIANCE_PRE"] as const) : []),
    "DESIGN",
    "TRAIN",
    ...(method.memory !== "none" ? (["COVARIANCE_POST", "DUALGPM"] as const) : []),
    ...method.extraPhases,
    "EVAL",
    "CHECKPOINT",
  ];
}

/**
 * The transition table of one task: each phase to the next, CHECKPOINT to "NEXT_TASK". A phase the
 * method does not have has no entry, so the machine cannot enter it.
 */
export class PhaseTable {
  readonly phases: readonly Phase[];
  private readonly next: ReadonlyMap<Phase, Phase | "NEXT_TASK">;

  constructor(readonly method: Method) {
    this.phases = taskPhases(method);
    this.next = new Map(this.phases.map((p, k) => [p, this.phases[k + 1] ?? "NEXT_TASK"]));
  }

  /** Where every task starts. */
  get first(): Phase {
    return this.phases[0];
  }

  has(phase: Phase): boolean {
    return this.next.has(phase);
  }

  after(phase: Phase): Phase | "NEXT_TASK" {
    const n = this.next.get(phase);
    if (n === undefined) throw new Error(`method ${this.method.name} has no phase ${phase}`);
    return n;
  }
}
