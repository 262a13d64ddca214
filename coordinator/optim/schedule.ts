/** Learning rate of an epoch as the reference actually runs it (docs/design.md#quirk-lr-schedule). */
export function learningRate(optim: "adam" | "sgd", base: number, epoch: number, epochs: number): number {
  if (optim === "sgd") {
    // torch.optim.lr_scheduler.CosineAnnealingLR(T_max = epochs), stepped once per epoch.
    return (base * (1 + Math.cos((Math.PI * epoch) / epochs))) / 2;
  }
  // The reference's CosineSchedule: its counter starts one late, so epochs 0 and 1 both run at the base
  // rate; with a single epoch it would divide by zero, so the base rate is used.
  if (epoch <= 1 || epochs <= 1) return base;
  return base * Math.cos((99 * Math.PI * (epoch - 1)) / (200 * (epochs - 1)));
}

/**
 * torch.optim.lr_scheduler.MultiStepLR stepped once per epoch: the rate is multiplied by `gamma` on
 * reaching each milestone, one multiplication at a time as its `step()` does (not gamma^k in one go).
 */
export function multiStepRate(
  base: number,
  gamma: number,
  milestones: readonly number[],
  epoch: number,
): number {
  let lr = base;
  for (const m of milestones) if (epoch >= m) lr *= gamma;
  return lr;
}
