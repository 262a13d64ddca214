import { augmentRng } from "../../common/data/augment_rng.js";
import type { TestTransform } from "../../common/data/catalog.js";
import type { AugmentKey } from "../../common/data/types.js";
import type { PixelSource } from "./pixel_source.js";
import { pyRound } from "./py_round.js";
import { randomResizedCropBox } from "./random_resized_crop.js";
import { resampleInto } from "./resample.js";

/** What turns a decoded image into the model's input. */
export interface TransformSpec {
  /** S: side of the output. */
  readonly imageSize: number;
  readonly testTransform: TestTransform;
  /** 3 tables of 256 floats: ToTensor and the optional normalisation (see `toTensorTables`). */
  readonly lut: readonly Float32Array[];
}

/**
 * ToTensor (`x/255` in float32) then the optional `Normalize(mean, std)`, tabulated per channel and
 * computed in float32 as torch does.
 */
export function toTensorTables(mean?: readonly number[], std?: readonly number[]): Float32Array[] {
  return [0, 1, 2].map((c) => {
    const t = new Float32Array(256);
    for (let v = 0; v < 256; v++) {
      const x = Math.fround(v / 255);
      t[v] = mean && std ? Math.fround(Math.fround(x - Math.fround(mean[c])) / Math.fround(std[c])) : x;
    }
    return t;
  });
}

/** torchvision `Resize(size)` for an int: the shorter side becomes `size`, the other `int(size·long/short)`. */
export function resizeShorter(width: number, height: number, size: number): { w: number; h: number } {
  if (width <= height) return { w: size, h: Math.trunc((size * height) / width) };
  return { w: Math.trunc((size * width) / height), h: size };
}

/**
 * Writes image `sample` through the training transform (RandomResizedCrop(S) + RandomHorizontalFlip,
 * drawn from the sample's counter-based stream) or the test transform, into `out` at `offset` (3·S·S
 * floats, CHW).
 */
export function transformInto(
  src: PixelSource,
  spec: TransformSpec,
  augment: AugmentKey | undefined,
  sample: number,
  out: Float32Array,
  offset: number,
): void {
  const S = spec.imageSize;
  const target = { out, offset, size: S, lut: spec.lut };
  const full = { x: 0, y: 0, w: src.width, h: src.height };
  if (augment !== undefined) {
    const rng = augmentRng(augment, sample);
    const box = randomResizedCropBox(src.width, src.height, rng);
    const flip = rng.nextFloat() < 0.5;
    resampleInto(src, box, S, S, { x: 0, y: 0 }, { ...target, flip });
    return;
  }
  if (src.width === S && src.height === S) {
    // Already the model's size: the identity, so CIFAR records and PNGs of them agree bit for bit.
    resampleInto(src, full, S, S, { x: 0, y: 0 }, { ...target, flip: false });
    return;
  }
  const shorter = spec.testTransform === "resize" ? S : Math.round((S * 256) / 224);
  const { w, h } = resizeShorter(src.width, src.height, shorter);
  // CenterCrop(S) (a no-op for a square source under plain Resize(S)).
  const window = { x: pyRound((w - S) / 2), y: pyRound((h - S) / 2) };
  resampleInto(src, full, w, h, window, { ...target, flip: false });
}
