import { describe, expect, it } from "vitest";
import { augmentRng } from "../../common/data/augment_rng.js";
import { planarSource } from "../../worker/data/pixel_source.js";
import { randomResizedCropBox } from "../../worker/data/random_resized_crop.js";
import { resampleInto } from "../../worker/data/resample.js";
import { resizeShorter, toTensorTables, transformInto } from "../../worker/data/transform.js";

const lut = toTensorTables();
const image = (w: number, h: number) =>
  planarSource(
    new Uint8Array(3 * w * h).map((_, i) => (i * 2654435761) >>> 24),
    w,
    h,
    3,
  );

describe("test transforms", () => {
  it("Resize(int) scales the shorter side and truncates the other, as torchvision", () => {
    expect(resizeShorter(500, 375, 256)).toEqual({ w: 341, h: 256 });
    expect(resizeShorter(375, 500, 256)).toEqual({ w: 256, h: 341 });
    expect(resizeShorter(32, 32, 224)).toEqual({ w: 224, h: 224 });
    expect(resizeShorter(500, 375, 37)).toEqual({ w: 49, h: 37 });
  });

  it("Resize(256) + CenterCrop(224) crops at round((341 − 224)/2) = 58 (ties to even) and 16", () => {
    const src = image(500, 375);
    const spec = { imageSize: 224, testTransform: "resize_center_crop" as const, lut };
    const out = new Float32Array(3 * 224 * 224);
    transformInto(src, spec, undefined, 0, out, 0);
    const manual = new Float32Array(3 * 224 * 224);
    resampleInto(
      src,
      { x: 0, y: 0, w: 500, h: 375 },
      341,
      256,
      { x: 58, y: 16 },
      { out: manual, offset: 0, size: 224, flip: false, lut },
    );
    expect(out).toEqual(manual);
  });

  it("for S = 32 resizes the shorter side to round(32·256/224) = 37 before the centre crop", () => {
    const src = image(500, 375);
    const out = new Float32Array(3 * 32 * 32);
    transformInto(src, { imageSize: 32, testTransform: "resize_center_crop", lut }, undefined, 0, out, 0);
    const manual = new Float32Array(3 * 32 * 32);
    // 49 × 37; left round(17/2) = 8, top round(5/2) = 2
    resampleInto(
      src,
      { x: 0, y: 0, w: 500, h: 375 },
      49,
      37,
      { x: 8, y: 2 },
      { out: manual, offset: 0, size: 32, flip: false, lut },
    );
    expect(out).toEqual(manual);
  });

  it("an image already S × S passes through as pixel/255 under both test transforms", () => {
    const src = image(16, 16);
    for (const testTransform of ["resize", "resize_center_crop"] as const) {
      const out = new Float32Array(3 * 256);
      transformInto(src, { imageSize: 16, testTransform, lut }, undefined, 0, out, 0);
      expect(out).toEqual(Float32Array.from(src.data, (v) => v / 255));
    }
  });
});

describe("training transform", () => {
  const key = { seed: 1, task: 2, epoch: 3 };

  it("is RandomResizedCrop(S) then a flip, both drawn from the sample's own stream", () => {
    const src = image(40, 30);
    const spec = { imageSize: 24, testTransform: "resize" as const, lut };
    for (const sample of [0, 1, 7, 1000]) {
      const out = new Float32Array(3 * 24 * 24);
      transformInto(src, spec, key, sample, out, 0);
      const rng = augmentRng(key, sample);
      const box = randomResizedCropBox(40, 30, rng);
      const flip = rng.nextFloat() < 0.5;
      const manual = new Float32Array(3 * 24 * 24);
      resampleInto(src, box, 24, 24, { x: 0, y: 0 }, { out: manual, offset: 0, size: 24, flip, lut });
      expect(out).toEqual(manual);
    }
  });

  it("flips half of the samples", () => {
    let flips = 0;
    const n = 4000;
    for (let s = 0; s < n; s++) {
      const rng = augmentRng(key, s);
      randomResizedCropBox(500, 375, rng);
      if (rng.nextFloat() < 0.5) flips++;
    }
    // binomial sd = √n/2 ≈ 32
    expect(Math.abs(flips - n / 2)).toBeLessThan(160);
  });
});
