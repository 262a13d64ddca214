/**
 * A method's optimizer recipe: for each task, its number of epochs, its optimizer and each epoch's
 * learning rates (the adapters' and the head's). A recipe is a name here; a method entry in
 * coordinator/methods.ts picks one.
 */
import { ConfigError, type RunConfig, taskHyper } from "../../common/config.js";
import { makeOptimizer, type Optimizer, Sgd } from "./optimizer.js";
import { learningRate, multiStepRate } from "./schedule.js";

/**
 * - `reference`: the config's `optim` (adam | sgd) with the reference's schedule; task 0 takes `init_epoch`,
 *   `init_lr` and `init_weight_decay`, later tasks `epochs`, `lrate` and `weight_decay`.
 * - `ca1`: the official InfLoRA_CA1 (docs/design.md#classifier-alignment). With `optim: sgd`, SGD with two
 *   learning rates, `lrate` for the adapters and `fc_lrate` for the head, both multiplied by `lrate_decay`
 *   at the epochs of CA1_MILESTONES (torch MultiStepLR, stepped per epoch); with `optim: adam`, Adam at
 *   `lrate` for both under the reference's cosine schedule. Every task, task 0 included, takes `epochs`,
 *   `lrate` and `weight_decay`: CA1 has no task-0 hyperparameters.
 */
export type OptimizerRecipe = "reference" | "ca1";

/** The official InfLoRA_CA1's MultiStepLR milestones (hard-coded there, not a config key). */
export const CA1_MILESTONES: readonly number[] = [18];

export interface TaskOptimizer {
  readonly epochs: number;
  readonly optimizer: Optimizer;
  /** The adapters' learning rate of an epoch (the one events and metrics report as `lr`). */
  learningRate(epoch: number): number;
  /** The head's learning rate of an epoch: the adapters' one unless the recipe gives the head its own. */
  headLearningRate(epoch: number): number;
}

export function taskOptimizer(recipe: OptimizerRecipe, cfg: RunConfig, task: number): TaskOptimizer {
  switch (recipe) {
    case "reference": {
      const hyper = taskHyper(cfg, task);
      const rate = (epoch: number) => learningRate(cfg.optim, hyper.lr, epoch, hyper.epochs);
      return {
        epochs: hyper.epochs,
        optimizer: makeOptimizer(cfg.optim, hyper.weightDecay),
        learningRate: rate,
        headLearningRate: rate,
      };
    }
    case "ca1": {
      const epochs = cfg.epochs;
      if (cfg.optim === "adam") {
        const rate = (epoch: number) => learningRate("adam", cfg.lrate, epoch, epochs);
        return {
          epochs,
          optimizer: makeOptimizer("adam", cfg.weight_decay),
          learningRate: rate,
          headLearningRate: rate,
        };
      }
      const fcLrate = cfg.fc_lrate;
      if (fcLrate === undefined)
        throw new ConfigError(`${cfg.file}: model_name ${cfg.model_name} with optim sgd needs "fc_lrate"`);
      // Read loosely so the recipe does not depend on how the config schema types the key.
      const decay: unknown = (cfg as { readonly lrate_decay?: unknown }).lrate_decay;
      if (typeof decay !== "number" || !(decay > 0))
        throw new ConfigError(
          `${cfg.file}: model_name ${cfg.model_name} with optim sgd needs "lrate_decay" (a positive number), got ${JSON.stringify(decay)}`,
        );
      return {
        epochs,
        optimizer: new Sgd(cfg.weight_decay),
        learningRate: (epoch) => multiStepRate(cfg.lrate, decay, CA1_MILESTONES, epoch),
        headLearningRate: (epoch) => multiStepRate(fcLrate, decay, CA1_MILESTONES, epoch),
      };
    }
  }
}
