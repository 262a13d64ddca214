import { readFile } from "node:fs/promises";
import { extname } from "node:path";
import type { Sharp, SharpOptions } from "sharp";
import { decodeBmp } from "./decode_bmp.js";
import { interleavedSource, type PixelSource } from "./pixel_source.js";

let sharpLoaded: Promise<(file: string, options: SharpOptions) => Sharp> | undefined;

/** sharp (libvips) on the first decode: a worker whose data needs no image files never loads it. */
function loadSharp(): Promise<(file: string, options: SharpOptions) => Sharp> {
  sharpLoaded ??= import("sharp").then(({ default: sharp }) => {
    // A data loader reads each file once per epoch: libvips' operation cache would only hold memory.
    sharp.cache(false);
    return sharp;
  });
  return sharpLoaded;
}

/**
 * Decodes an image file to 8-bit RGB, as PIL's `convert('RGB')` does for the reference: grey is
 * replicated, an alpha channel is dropped without compositing (PIL does not composite either), 16-bit
 * images keep their high byte, CMYK goes through libvips' colour management (PIL uses a naive formula;
 * the few CMYK JPEGs of ImageNet-R may differ slightly). No EXIF rotation, like PIL. BMP, which libvips
 * lacks, has its own decoder.
 */
export async function decodeImage(file: string): Promise<PixelSource> {
  if (extname(file).toLowerCase() === ".bmp") return decodeBmp(await readFile(file));
  const sharp = await loadSharp();
  const { data, info } = await sharp(file, { limitInputPixels: 1 << 28 })
    .removeAlpha()
    .toColourspace("srgb")
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3 || data.length !== info.width * info.height * 3) {
    throw new Error(`decoder returned ${info.channels} channels`);
  }
  return interleavedSource(
    new Uint8Array(data.buffer, data.byteOffset, data.length),
    info.width,
    info.height,
    3,
  );
}
