import { interleavedSource, type PixelSource } from "./pixel_source.js";

/**
 * Windows BMP, which libvips (and so sharp) cannot read: uncompressed 1/4/8-bit palette images and
 * 16/24/32-bit images (BI_RGB or BI_BITFIELDS), bottom-up or top-down. Alpha is ignored, as PIL's
 * convert('RGB') does. RLE-compressed and OS/2 files are refused with a clear message.
 */
export function decodeBmp(bytes: Uint8Array): PixelSource {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const need = (n: number) => {
    if (bytes.length < n) throw new Error("BMP file is truncated");
  };
  need(54);
  if (bytes[0] !== 0x42 || bytes[1] !== 0x4d) throw new Error("not a BMP file");
  const dataOffset = v.getUint32(10, true);
  const dibSize = v.getUint32(14, true);
  if (dibSize < 40) throw new Error("OS/2 BMP headers are not supported");
  const width = v.getInt32(18, true);
  const rawHeight = v.getInt32(22, true);
  const bpp = v.getUint16(28, true);
  const compression = v.getUint32(30, true);
  const colorsUsed = v.getUint32(46, true);
  const height = Math.abs(rawHeight);
  if (width <= 0 || height === 0 || width * height > 1 << 28)
    throw new Error(`BMP has a bad size ${width}×${rawHeight}`);
  if (compression !== 0 && compression !== 3 && compression !== 6) {
    throw new Error(`BMP compression ${compression} (RLE/JPEG/PNG) is not supported`);
  }
  const stride = Math.floor((bpp * width + 31) / 32) * 4;
  need(dataOffset + stride * height);
  const out = new Uint8Array(width * height * 3);

  if (bpp <= 8) {
    if (![1, 4, 8].includes(bpp)) throw new Error(`BMP with ${bpp} bits per pixel is not supported`);
    const entries = colorsUsed || 1 << bpp;
    const palette = 14 + dibSize;
    need(palette + entries * 4);
    for (let y = 0; y < height; y++) {
      const row = dataOffset + (rawHeight > 0 ? height - 1 - y : y) * stride;
      for (let x = 0; x < width; x++) {
        const bit = x * bpp;
        const index = (bytes[row + (bit >> 3)] >> (8 - bpp - (bit & 7))) & ((1 << bpp) - 1);
        if (index >= entries) throw new Error(`BMP palette index ${index} out of range`);
        const p = palette + index * 4;
        const o = (y * width + x) * 3;
        out[o] = bytes[p + 2];
        out[o + 1] = bytes[p + 1];
        out[o + 2] = bytes[p];
      }
    }
    return interleavedSource(out, width, height, 3);
  }

  if (bpp !== 16 && bpp !== 24 && bpp !== 32)
    throw new Error(`BMP with ${bpp} bits per pixel is not supported`);
  let masks: number[];
  if (compression === 0) {
    masks = bpp === 16 ? [0x7c00, 0x03e0, 0x001f] : [0xff0000, 0x00ff00, 0x0000ff];
  } else {
    need(66);
    masks = [v.getUint32(54, true), v.getUint32(58, true), v.getUint32(62, true)];
  }
  const fields = masks.map((m) => {
    if (m === 0) return { shift: 0, max: 0, mask: 0 };
    let shift = 0;
    while (((m >>> shift) & 1) === 0) shift++;
    return { shift, max: m >>> shift, mask: m >>> 0 };
  });
  const bytesPer = bpp / 8;
  for (let y = 0; y < height; y++) {
    const row = dataOffset + (rawHeight > 0 ? height - 1 - y : y) * stride;
    for (let x = 0; x < width; x++) {
      const p = row + x * bytesPer;
      const o = (y * width + x) * 3;
      if (bpp === 24) {
        out[o] = bytes[p + 2];
        out[o + 1] = bytes[p + 1];
        out[o + 2] = bytes[p];
        continue;
      }
      const px = bpp === 16 ? v.getUint16(p, true) : v.getUint32(p, true);
      for (let c = 0; c < 3; c++) {
        const f = fields[c];
        out[o + c] = f.max === 0 ? 0 : Math.round((((px & f.mask) >>> f.shift) * 255) / f.max);
      }
    }
  }
  return interleavedSource(out, width, height, 3);
}
