import type { CounterRng } from "../../common/data/counter_rng.js";
import type { Box } from "./pixel_source.js";
import { pyRound } from "./py_round.js";

export interface CropBox extends Box {
  /** True when ten tries failed and the centre-crop fallback was used. */
  readonly fallback: boolean;
}

/**
 * torchvision's `RandomResizedCrop.get_params`: up to ten tries of an area fraction uniform in `scale`
 * and an aspect ratio log-uniform in `ratio`, kept when the box fits; else a centre crop with the ratio
 * clamped to the range. Draw order as torchvision: area, ratio per try, then top, then left.
 */
export function randomResizedCropBox(
  width: number,
  height: number,
  rng: CounterRng,
  scale: readonly [number, number] = [0.08, 1],
  ratio: readonly [number, number] = [3 / 4, 4 / 3],
): CropBox {
  const area = width * height;
  const logLo = Math.log(ratio[0]);
  const logHi = Math.log(ratio[1]);
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * (scale[0] + (scale[1] - scale[0]) * rng.nextFloat());
    const aspect = Math.exp(logLo + (logHi - logLo) * rng.nextFloat());
    const w = pyRound(Math.sqrt(targetArea * aspect));
    const h = pyRound(Math.sqrt(targetArea / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const y = Math.floor(rng.nextFloat() * (height - h + 1));
      const x = Math.floor(rng.nextFloat() * (width - w + 1));
      return { x, y, w, h, fallback: false };
    }
  }
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < Math.min(ratio[0], ratio[1])) {
    h = pyRound(w / Math.min(ratio[0], ratio[1]));
  } else if (inRatio > Math.max(ratio[0], ratio[1])) {
    w = pyRound(h * Math.max(ratio[0], ratio[1]));
  }
  return { x: Math.floor((width - w) / 2), y: Math.floor((height - h) / 2), w, h, fallback: true };
}
