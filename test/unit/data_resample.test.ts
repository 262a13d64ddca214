import { describe, expect, it } from "vitest";
import { interleavedSource, planarSource } from "../../worker/data/pixel_source.js";
import { resampleInto } from "../../worker/data/resample.js";
import { toTensorTables } from "../../worker/data/transform.js";

const lut = toTensorTables();

/** Resizes a grey image (given as rows) and returns the output window as uint8 rows. */
function resizeGrey(rows: number[][], outW: number, outH: number, window = { x: 0, y: 0 }, size = outW) {
  const h = rows.length;
  const w = rows[0].length;
  const src = planarSource(Uint8Array.from(rows.flat()), w, h, 1);
  const out = new Float32Array(3 * size * size);
  resampleInto(src, { x: 0, y: 0, w, h }, outW, outH, window, { out, offset: 0, size, flip: false, lut });
  return Array.from({ length: size }, (_, y) =>
    Array.from({ length: size }, (_, x) => Math.round(out[y * size + x] * 255)),
  );
}

describe("bilinear resize (Pillow's algorithm)", () => {
  it("upsampling 2×2 → 4×4 follows the half-pixel-centre formula, rounded after each pass", () => {
    // Output x samples the source at (x + 0.5)/2 − 0.5 = −0.25, 0.25, 0.75, 1.25, clamped at the edges:
    // weights (1, 0), (0.75, 0.25), (0.25, 0.75), (0, 1). Rows first (rounded to integers), then columns.
    // Row 0 [0, 100] → [0, 25, 75, 100]; row 1 [200, 40] → [200, 160, 80, 40].
    // Output row 1 = 0.75·row0 + 0.25·row1 = [50, 58.75, 76.25, 85] → [50, 59, 76, 85];
    // output row 2 = 0.25·row0 + 0.75·row1 = [150, 126.25, 78.75, 55] → [150, 126, 79, 55].
    expect(
      resizeGrey(
        [
          [0, 100],
          [200, 40],
        ],
        4,
        4,
      ),
    ).toEqual([
      [0, 25, 75, 100],
      [50, 59, 76, 85],
      [150, 126, 79, 55],
      [200, 160, 80, 40],
    ]);
  });

  it("upsampling 3 → 5 pixels: source positions (x + 0.5)·3/5 − 0.5", () => {
    // positions −0.2, 0.4, 1.0, 1.6, 2.2 → p0, 0.6p0 + 0.4p1, p1, 0.4p1 + 0.6p2, p2 (edges clamped)
    const row = [10, 60, 210];
    const expected = [10, 30, 60, 150, 210];
    // a 3×1 image resized to 5 wide, 1 high would need a 5×5 window; use 5 identical rows instead
    const out = resizeGrey([row, row, row, row, row], 5, 5);
    expect(out[0]).toEqual(expected);
    expect(out[4]).toEqual(expected);
  });

  it("downsampling widens the filter (antialiasing), as PIL does", () => {
    // 4 → 2: scale 2, triangle of half-width 2 centred at 1.0 and 3.0 over pixel centres 0.5, 1.5, 2.5, 3.5:
    // weights ∝ (0.75, 0.75, 0.25) on pixels 0..2 and (0.25, 0.75, 0.75) on 1..3, normalised by 1.75.
    // [0, 70, 140, 210] → (70·3 + 140)/7 = 50 and (70 + 140·3 + 210·3)/7 = 160 (plain bilinear: 35, 175).
    const row = [0, 70, 140, 210];
    const out = resizeGrey([row, row], 2, 2);
    expect(out).toEqual([
      [50, 160],
      [50, 160],
    ]);
  });

  it("an unchanged size is the identity and a window is a crop of the full result", () => {
    const rows = [
      [1, 2, 3],
      [4, 5, 6],
      [7, 8, 9],
    ];
    expect(resizeGrey(rows, 3, 3)).toEqual(rows);
    const full = resizeGrey(rows, 6, 6);
    const crop = resizeGrey(rows, 6, 6, { x: 2, y: 1 }, 3);
    expect(crop).toEqual(full.slice(1, 4).map((r) => r.slice(2, 5)));
  });

  it("reads interleaved and planar RGB alike, regions like a prior crop, and flips", () => {
    const w = 5;
    const h = 4;
    const planar = new Uint8Array(3 * w * h).map((_, i) => (i * 37) % 256);
    const inter = new Uint8Array(3 * w * h);
    for (let c = 0; c < 3; c++) for (let p = 0; p < w * h; p++) inter[p * 3 + c] = planar[c * w * h + p];
    const run = (src: ReturnType<typeof planarSource>, flip: boolean) => {
      const out = new Float32Array(3 * 3 * 3);
      resampleInto(
        src,
        { x: 1, y: 1, w: 3, h: 2 },
        3,
        3,
        { x: 0, y: 0 },
        { out, offset: 0, size: 3, flip, lut },
      );
      return out;
    };
    const a = run(planarSource(planar, w, h, 3), false);
    expect(run(interleavedSource(inter, w, h, 3), false)).toEqual(a);
    // The region behaves as a cropped image: crop explicitly and compare.
    const cropped = new Uint8Array(3 * 3 * 2);
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < 2; y++)
        for (let x = 0; x < 3; x++) cropped[c * 6 + y * 3 + x] = planar[c * w * h + (y + 1) * w + x + 1];
    const viaCrop = new Float32Array(27);
    resampleInto(
      planarSource(cropped, 3, 2, 3),
      { x: 0, y: 0, w: 3, h: 2 },
      3,
      3,
      { x: 0, y: 0 },
      { out: viaCrop, offset: 0, size: 3, flip: false, lut },
    );
    expect(viaCrop).toEqual(a);
    const flipped = run(planarSource(planar, w, h, 3), true);
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < 3; y++)
        for (let x = 0; x < 3; x++) expect(flipped[c * 9 + y * 3 + x]).toBe(a[c * 9 + y * 3 + 2 - x]);
  });

  it("ToTensor is x/255 in float32 and normalisation is (x − mean)/std in float32", () => {
    for (let v = 0; v < 256; v++) expect(lut[0][v]).toBe(Math.fround(v / 255));
    const [t] = toTensorTables([0.5, 0.5, 0.5], [0.25, 0.25, 0.25]);
    expect(t[255]).toBe(2);
    expect(t[0]).toBe(-2);
  });
});
