import { open } from "node:fs/promises";
import { DataError } from "./errors.js";

/** One CIFAR-100 binary file (`train.bin`/`test.bin`): 3074-byte records, coarse, fine, 3072 bytes CHW. */
export interface CifarRecords {
  readonly fine: Uint8Array;
  readonly coarse: Uint8Array;
  /** n × 3072 bytes (3 × 32 × 32 CHW) in shared memory; only when pixels were asked for. */
  readonly pixels?: Uint8Array;
}

export const CIFAR_RECORD = 3074;
export const CIFAR_IMAGE = 3072;

/** Reads a CIFAR-100 binary file in large chunks; pixels go straight into shared memory. */
export async function readCifarBinary(file: string, withPixels: boolean): Promise<CifarRecords> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(file, "r");
  } catch (e) {
    throw new DataError(`cannot open CIFAR binary file (${(e as Error).message})`, file);
  }
  try {
    const { size } = await handle.stat();
    if (size === 0 || size % CIFAR_RECORD !== 0) {
      throw new DataError(
        `wrong record size: ${size} bytes is not a positive multiple of the ${CIFAR_RECORD}-byte CIFAR-100 record`,
        file,
      );
    }
    const n = size / CIFAR_RECORD;
    const fine = new Uint8Array(n);
    const coarse = new Uint8Array(n);
    const pixels = withPixels ? new Uint8Array(new SharedArrayBuffer(n * CIFAR_IMAGE)) : undefined;
    const perChunk = 2048;
    const buf = Buffer.allocUnsafe(perChunk * CIFAR_RECORD);
    for (let first = 0; first < n; first += perChunk) {
      const count = Math.min(perChunk, n - first);
      const want = count * CIFAR_RECORD;
      let got = 0;
      while (got < want) {
        const { bytesRead } = await handle.read(buf, got, want - got, first * CIFAR_RECORD + got);
        if (bytesRead === 0) throw new DataError("file ended early (changed while reading?)", file);
        got += bytesRead;
      }
      for (let r = 0; r < count; r++) {
        const at = r * CIFAR_RECORD;
        coarse[first + r] = buf[at];
        fine[first + r] = buf[at + 1];
        pixels?.set(buf.subarray(at + 2, at + CIFAR_RECORD), (first + r) * CIFAR_IMAGE);
      }
    }
    return { fine, coarse, pixels };
  } finally {
    await handle.close();
  }
}
