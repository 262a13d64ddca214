import { type CounterRng, counterRng } from "./counter_rng.js";
import type { AugmentKey } from "./types.js";

/** Tags the augmentation stream so it never coincides with other users of counterRng. */
const AUGMENT_STREAM = 0x61756731; // "aug1"

/** The random stream of one sample's crop and flip: a function of (seed, task, epoch, sample) only. */
export function augmentRng(key: AugmentKey, sample: number): CounterRng {
  return counterRng(AUGMENT_STREAM, key.seed, key.task, key.epoch, sample);
}
