import type { Box, PixelSource } from "./pixel_source.js";

/**
 * Pillow's bilinear resize of 8-bit images (`Image.resize(size, BILINEAR)`, what torchvision's Resize and
 * RandomResizedCrop run on PIL images), reproduced to the bit: a triangle filter widened by the
 * downscale factor (antialiasing), half-pixel centres, coefficients in 22-bit fixed point, a horizontal
 * pass rounded to uint8, then a vertical pass. For upsampling this is the classic half-pixel-centre
 * bilinear formula with edge clamping.
 */

const PRECISION_BITS = 22;
const HALF = 1 << (PRECISION_BITS - 1);
const MAX = 1 << (PRECISION_BITS + 8);

interface Coefficients {
  /** Per output pixel: first input pixel and number of taps. */
  readonly first: Int32Array;
  readonly count: Int32Array;
  /** Fixed-point weights, `ksize` per output pixel. */
  readonly weights: Int32Array;
  readonly ksize: number;
}

/** Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear filter (support 1). */
export function bilinearCoefficients(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  const ss = 1 / filterScale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const t = Math.abs((x + xmin - center + 0.5) * ss);
      const w = t < 1 ? 1 - t : 0;
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const w = ww !== 0 ? k[x] / ww : k[x];
      weights[xx * ksize + x] = Math.trunc(
        w < 0 ? -0.5 + w * (1 << PRECISION_BITS) : 0.5 + w * (1 << PRECISION_BITS),
      );
    }
    first[xx] = xmin;
    count[xx] = xmax;
  }
  return { first, count, weights, ksize };
}

function clip8(ss: number): number {
  if (ss >= MAX) return 255;
  if (ss <= 0) return 0;
  return ss >> PRECISION_BITS;
}

/** Where and how the resized pixels land: CHW float32 through a per-channel uint8 → float table. */
export interface ResampleTarget {
  readonly out: Float32Array;
  /** Index of the first value of this image in `out`. */
  readonly offset: number;
  /** Side of the output image (the window is S × S). */
  readonly size: number;
  readonly flip: boolean;
  /** 3 tables of 256 values: ToTensor (/255) and the optional normalisation. */
  readonly lut: readonly Float32Array[];
}

/**
 * Resizes the `region` of `src` to `outW × outH` (as if cropped first, like PIL's crop().resize()) and
 * writes the S × S `window` of the result (a centre crop, or everything) to the target, mirrored when
 * `flip` is set.
 */
export function resampleInto(
  src: PixelSource,
  region: Box,
  outW: number,
  outH: number,
  window: { readonly x: number; readonly y: number },
  target: ResampleTarget,
): void {
  const S = target.size;
  if (window.x < 0 || window.y < 0 || window.x + S > outW || window.y + S > outH) {
    throw new RangeError(`window ${window.x},${window.y} of size ${S} exceeds the ${outW}×${outH} output`);
  }
  if (region.x < 0 || region.y < 0 || region.x + region.w > src.width || region.y + region.h > src.height) {
    throw new RangeError(`region ${JSON.stringify(region)} exceeds the ${src.width}×${src.height} image`);
  }
  const C = src.channels;
  const { data, pixelStride, rowStride, planeStride } = src;
  const needH = outW !== region.w;
  const needV = outH !== region.h;
  const vc = needV ? bilinearCoefficients(region.h, outH) : undefined;
  // Rows of the region the vertical pass reads (all the window needs, as Pillow's ybox).
  const rowFirst = vc ? vc.first[window.y] : window.y;
  const rowEnd = vc ? vc.first[window.y + S - 1] + vc.count[window.y + S - 1] : window.y + S;
  const rows = rowEnd - rowFirst;

  // Horizontal pass into a planar uint8 buffer: C planes of rows × S.
  const tmp = new Uint8Array(C * rows * S);
  if (needH) {
    const hc = bilinearCoefficients(region.w, outW);
    if (C === 3 && pixelStride === 3 && planeStride === 1)
      horizontalInterleaved3(src, region, rowFirst, rows, window.x, S, hc, tmp);
    else horizontalPlanar(src, region, rowFirst, rows, window.x, S, hc, tmp);
  } else {
    for (let c = 0; c < C; c++) {
      for (let r = 0; r < rows; r++) {
        const rowBase =
          c * planeStride + (region.y + rowFirst + r) * rowStride + (region.x + window.x) * pixelStride;
        const tBase = (c * rows + r) * S;
        for (let xx = 0; xx < S; xx++) tmp[tBase + xx] = data[rowBase + xx * pixelStride];
      }
    }
  }

  // Vertical pass straight into the float output (3 planes; a grey source feeds all three), a row of
  // accumulators at a time so the inner loops run over contiguous memory.
  const { out, offset, flip, lut } = target;
  const plane = S * S;
  const acc = new Int32Array(S);
  const line = new Uint8Array(S);
  for (let c = 0; c < C; c++) {
    const tPlane = c * rows * S;
    for (let yy = 0; yy < S; yy++) {
      if (vc) {
        const oy = window.y + yy;
        const n = vc.count[oy];
        const kBase = oy * vc.ksize;
        const r0 = vc.first[oy] - rowFirst;
        acc.fill(HALF);
        for (let k = 0; k < n; k++) {
          const w = vc.weights[kBase + k];
          const row = tPlane + (r0 + k) * S;
          for (let xx = 0; xx < S; xx++) acc[xx] += tmp[row + xx] * w;
        }
        for (let xx = 0; xx < S; xx++) line[xx] = clip8(acc[xx]);
      } else {
        line.set(tmp.subarray(tPlane + yy * S, tPlane + (yy + 1) * S));
      }
      for (let oc = c; oc < 3; oc += C === 1 ? 1 : 3) {
        const table = lut[oc];
        const o = offset + oc * plane + yy * S;
        if (flip) for (let xx = 0; xx < S; xx++) out[o + S - 1 - xx] = table[line[xx]];
        else for (let xx = 0; xx < S; xx++) out[o + xx] = table[line[xx]];
      }
    }
  }
}

/** Horizontal pass over an interleaved RGB source: one set of weights feeds three accumulators. */
function horizontalInterleaved3(
  src: PixelSource,
  region: Box,
  rowFirst: number,
  rows: number,
  x0: number,
  S: number,
  hc: Coefficients,
  tmp: Uint8Array,
): void {
  const { data, rowStride } = src;
  const { first, count, weights, ksize } = hc;
  const planeSize = rows * S;
  for (let r = 0; r < rows; r++) {
    const rowBase = (region.y + rowFirst + r) * rowStride + region.x * 3;
    const tBase = r * S;
    for (let xx = 0; xx < S; xx++) {
      const ox = x0 + xx;
      const n = count[ox];
      const kBase = ox * ksize;
      let p = rowBase + first[ox] * 3;
      let s0 = HALF;
      let s1 = HALF;
      let s2 = HALF;
      for (let k = 0; k < n; k++) {
        const w = weights[kBase + k];
        s0 += data[p] * w;
        s1 += data[p + 1] * w;
        s2 += data[p + 2] * w;
        p += 3;
      }
      tmp[tBase + xx] = clip8(s0);
      tmp[planeSize + tBase + xx] = clip8(s1);
      tmp[2 * planeSize + tBase + xx] = clip8(s2);
    }
  }
}

/** Horizontal pass, any layout, one channel at a time. */
function horizontalPlanar(
  src: PixelSource,
  region: Box,
  rowFirst: number,
  rows: number,
  x0: number,
  S: number,
  hc: Coefficients,
  tmp: Uint8Array,
): void {
  const { data, pixelStride, rowStride, planeStride, channels } = src;
  const { first, count, weights, ksize } = hc;
  for (let c = 0; c < channels; c++) {
    for (let r = 0; r < rows; r++) {
      const rowBase = c * planeStride + (region.y + rowFirst + r) * rowStride + region.x * pixelStride;
      const tBase = (c * rows + r) * S;
      for (let xx = 0; xx < S; xx++) {
        const ox = x0 + xx;
        const n = count[ox];
        const kBase = ox * ksize;
        let p = rowBase + first[ox] * pixelStride;
        let ss = HALF;
        for (let k = 0; k < n; k++) {
          ss += data[p] * weights[kBase + k];
          p += pixelStride;
        }
        tmp[tBase + xx] = clip8(ss);
      }
    }
  }
}
