import { readFile } from "node:fs/promises";
import { extname } from "node:path";
import sharp from "sharp";
import { decodeBmp } from "./decode_bmp.js";
import { interleavedSource, type PixelSource } from "./pixel_source.js";

// A data loader reads each file once per epoch: libvips' operation cache would only hold memory.
sharp.cache(false);

/**
 * Decodes an image file to 8-bit RGB, as PIL's `convert('RGB')` does for the reference: grey is
 * replicated, an alpha channel is dropped without compositing (PIL does not composite either), 16-bit
 * images keep their high byte, CMYK goes through libvips' colour management (PIL uses a naive formula;
 * the few CMYK JPEGs of ImageNet-R may differ slightly). No EXIF rotation, like PIL. BMP, which libvips
 * lacks, has its own decoder.
 */
export async function decodeImage(file: string): Promise<PixelSource> {
  if (extname(file).toLowerCase() === ".bmp") return decodeBmp(await readFile(file));
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
