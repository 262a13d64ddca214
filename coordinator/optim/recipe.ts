/**
 * A method's optimizer recipe: for each task, its number of epochs, its optimizer and each epoch's
 * learning rate. One recipe today; a method with its own (classifier alignment's two learning rates)
 * adds a name here.
 */
import { type RunConfig, taskHyper } from "../../common/config.js";
import { makeOptimizer, type Optimizer } from "./optimizer.js";
import { learningRate } from "./schedule.js";

/**
 * `reference`: the config's `optim` (adam | sgd) with the reference's schedule; task 0 takes `init_epoch`,
 * `init_lr` and `init_weight_decay`, later tasks `epochs`, `lrate` and `weight_decay`.
 */
export type OptimizerRecipe = "reference";

export interface TaskOptimizer {
  readonly epochs: number;
  readonly optimizer: Optimizer;
  learningRate(epoch: number): number;
}

export function taskOptimizer(recipe: OptimizerRecipe, cfg: RunConfig, task: number): TaskOptimizer {
  switch (recipe) {
    case "reference": {
      const hyper = taskHyper(cfg, task);
      return {
        epochs: hyper.epochs,
        optimizer: makeOptimizer(cfg.optim, hyper.weightDecay),
        learningRate: (epoch) => learningRate(cfg.optim, hyper.lr, epoch, hyper.epochs),
      };
    }
  }
}
