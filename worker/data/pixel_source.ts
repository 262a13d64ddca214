/**
 * A uint8 image addressed through strides, so interleaved (HWC, from the decoder) and planar (CHW,
 * CIFAR's records) pixels go through the same resampler without copies.
 */
export interface PixelSource {
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
  /** 1 (grey, replicated to RGB on output) or 3. */
  readonly channels: 1 | 3;
  readonly pixelStride: number;
  readonly rowStride: number;
  readonly planeStride: number;
}

export function interleavedSource(
  data: Uint8Array,
  width: number,
  height: number,
  channels: 1 | 3,
): PixelSource {
  return {
    data,
    width,
    height,
    channels,
    pixelStride: channels,
    rowStride: width * channels,
    planeStride: 1,
  };
}

export function planarSource(data: Uint8Array, width: number, height: number, channels: 1 | 3): PixelSource {
  return { data, width, height, channels, pixelStride: 1, rowStride: width, planeStride: width * height };
}

/** An integer rectangle of an image. */
export interface Box {
  readonly x: number;
  readonly y: number;
  readonly w: number;
  readonly h: number;
}
