/**
 * The entries of a zip archive (.npz, PyTorch's .pth), read with fflate and checked against their CRC-32.
 *
 * fflate's `unzipSync` walks the central directory (ZIP64 included), skips local headers and inflates;
 * it neither checks nor reports the CRC-32 of an entry, and stored entries — all of a `np.savez` or a
 * `torch.save` archive — have no other integrity check. So the only zip parsing kept here is the list of
 * CRC-32s, read from the same central directory.
 */
import { crc32 } from "node:zlib";
import { unzipSync } from "fflate";
import { readWholeFile } from "./safetensors.js";

export class ZipError extends Error {
  override readonly name = "ZipError";
}

/** An archive held in memory; `read` extracts one entry (fflate) and checks its CRC-32. */
export interface ZipArchive {
  readonly path: string;
  /** Entry names in central-directory order. */
  readonly names: readonly string[];
  /** The entry in a buffer of its own (byteOffset 0: data aligned inside the entry stay aligned). */
  read(name: string): Uint8Array;
}

/**
 * Opens an archive; `kind` (".npz", ".pth") names the format expected, for messages. The archive is read
 * into memory whole: fflate needs it as one array.
 */
export async function openZip(path: string, kind: string): Promise<ZipArchive> {
  let bytes: Uint8Array;
  try {
    bytes = await readWholeFile(path);
  } catch (err) {
    throw new ZipError(
      `${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
  }
  // fflate reads the ZIP64 end record's offsets as 32-bit numbers.
  if (bytes.length >= 2 ** 32) throw new ZipError(`${path}: archives of 4 GiB or more are not supported`);
  const entries = centralCrcs(
    bytes,
    (why) => new ZipError(`${path}: not a valid ${kind} (zip) archive: ${why}`),
  );
  return {
    path,
    names: [...entries.keys()],
    read(name: string): Uint8Array {
      const where = `${path}: entry "${name}"`;
      const entry = entries.get(name);
      if (entry === undefined) throw new ZipError(`${where}: no such entry in the archive`);
      if (entry.flags & 1) throw new ZipError(`${where}: encrypted zip entries are not supported`);
      let data: Uint8Array | undefined;
      try {
        data = unzipSync(bytes, { filter: (f) => f.name === name })[name];
      } catch (err) {
        throw new ZipError(`${where}: cannot extract (${(err as Error).message})`);
      }
      if (data === undefined) throw new ZipError(`${where}: cannot extract (fflate found no such entry)`);
      const got = crc32(data) >>> 0;
      if (got !== entry.crc) {
        throw new ZipError(
          `${where}: CRC-32 mismatch (archive says ${hex(entry.crc)}, data gives ${hex(got)}): the file is corrupt`,
        );
      }
      return data;
    },
  };
}

/**
 * Name → CRC-32 and flags of every central-directory entry. Bounds are checked here, so a truncated or
 * corrupt directory is an error naming the file rather than garbage from fflate, which reads unchecked.
 */
function centralCrcs(
  bytes: Uint8Array,
  bad: (why: string) => ZipError,
): Map<string, { crc: number; flags: number }> {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // End of central directory: 22 bytes plus a comment of up to 65535 bytes at the end of the file.
  let eocd = bytes.length - 22;
  while (eocd >= 0 && eocd >= bytes.length - 22 - 0xffff && dv.getUint32(eocd, true) !== 0x06054b50) eocd--;
  if (eocd < 0 || eocd < bytes.length - 22 - 0xffff) throw bad("no end-of-central-directory record");
  let count = dv.getUint16(eocd + 10, true);
  let at = dv.getUint32(eocd + 16, true);
  // ZIP64: the locator sits just before the record and points at the 64-bit end record.
  if (eocd >= 20 && dv.getUint32(eocd - 20, true) === 0x07064b50) {
    const rec = Number(dv.getBigUint64(eocd - 12, true));
    if (rec + 56 > bytes.length || dv.getUint32(rec, true) !== 0x06064b50)
      throw bad("ZIP64 end record missing");
    count = Number(dv.getBigUint64(rec + 32, true));
    at = Number(dv.getBigUint64(rec + 48, true));
  }
  const names = new TextDecoder();
  const out = new Map<string, { crc: number; flags: number }>();
  for (let n = 0; n < count; n++) {
    if (at + 46 > bytes.length || dv.getUint32(at, true) !== 0x02014b50) {
      throw bad(`central directory entry ${n} is missing or corrupt`);
    }
    const nameEnd = at + 46 + dv.getUint16(at + 28, true);
    const next = nameEnd + dv.getUint16(at + 30, true) + dv.getUint16(at + 32, true);
    if (next > bytes.length) throw bad(`central directory entry ${n} is corrupt`);
    const name = names.decode(bytes.subarray(at + 46, nameEnd));
    if (out.has(name)) throw bad(`duplicate entry "${name}"`);
    out.set(name, { crc: dv.getUint32(at + 16, true), flags: dv.getUint16(at + 8, true) });
    at = next;
  }
  return out;
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, "0")}`;
}
