/**
 * The methods this trainer runs, as data (docs/design.md#methods). Each names its design of B, its
 * memory of earlier tasks, its optimizer recipe and its extra phases; the trainer walks the phase table
 * built from it and never tests a method's name.
 */
import type { MODEL_NAMES, RunConfig } from "../common/config.js";
import type { OptimizerRecipe } from "./optim/recipe.js";

export type ModelName = (typeof MODEL_NAMES)[number];

/** Every phase any method passes through, in the order a task meets them (metrics list them all). */
export const PHASES = [
  "COVARIANCE_PRE",
  "DESIGN",
  "TRAIN",
  "COVARIANCE_POST",
  "DUALGPM",
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

export interface Method {
  readonly name: ModelName;
  readonly design: BDesign;
  readonly memory: Memory;
  readonly optimizer: OptimizerRecipe;
  /** Phases of the method's own, run after the memory update and before evaluation. */
  readonly extraPhases: readonly Phase[];
}

const inflora = { design: "projected", memory: "DualGPM", optimizer: "reference", extraPhases: [] } as const;
const inflorab5 = { ...inflora, memory: "GPM" } as const;

/**
 * The reference's `_domain` entry points run DomainNet through the same algorithm as their base method;
 * only their name differs.
 */
export const METHODS: { readonly [N in ModelName]: Method } = {
  InfLoRA: { name: "InfLoRA", ...inflora },
  InfLoRA_domain: { name: "InfLoRA_domain", ...inflora },
  InfLoRAb5: { name: "InfLoRAb5", ...inflorab5 },
  InfLoRAb5_domain: { name: "InfLoRAb5_domain", ...inflorab5 },
  SeqLoRA: { name: "SeqLoRA", design: "random", memory: "none", optimizer: "reference", extraPhases: [] },
};

export function methodOf(cfg: Pick<RunConfig, "model_name">): Method {
  return METHODS[cfg.model_name];
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
