/**
 * Safetensors files that carry their own checksums (docs/design.md#checksums), for the files a resume
 * trusts: checkpoints and the progress file. Two `__metadata__` entries, both SHA-256 in lowercase hex:
 *
 *   checksum_header   "sha256:<hex>" of the file's first 8 + N bytes (length, JSON header, padding),
 *                     computed with this entry's own 64 hex digits read as "0"s
 *   checksum_tensors  "sha256:<hex>,<hex>,…" one digest per tensor, in data-buffer order
 *
 * The header digest is checked first, so the tensor digests and offsets it holds can be trusted when the
 * data are checked; every data byte belongs to exactly one tensor, so damage anywhere in a file is caught
 * and named: the header, the tensor whose bytes changed, or the tensor a truncation cut into.
 *
 * A file without `checksum_header` (written before checksums existed) is still read, unverified, and a
 * debug line says so; its structure is checked as any safetensors file's.
 */
import { createHash } from "node:crypto";
import { writeFileAtomic } from "./atomic_write.js";
import { log } from "./log.js";
import {
  parseSafetensors,
  readWholeFile,
  SafetensorsError,
  type StFile,
  type StTensor,
  serializeSafetensors,
} from "./safetensors.js";

const ALGO = "sha256";
const DIGEST_HEX = 64;
export const HEADER_CHECKSUM_KEY = "checksum_header";
export const TENSORS_CHECKSUM_KEY = "checksum_tensors";

/** A file whose bytes are not the ones written: `where` names the header, a tensor, or the file's end. */
export class DamagedFileError extends Error {
  override readonly name = "DamagedFileError";
  constructor(
    readonly file: string,
    readonly where: string,
    detail: string,
  ) {
    super(`${file}: damaged ${where}: ${detail}`);
  }
}

export interface CheckedFile extends StFile {
  /** "verified": every byte matched its checksum; "absent": an older file without checksums. */
  readonly checksum: "verified" | "absent";
}

function sha256(bytes: Uint8Array): string {
  return createHash(ALGO).update(bytes).digest("hex");
}

/** The file as chunks (as `serializeSafetensors`), with both checksum entries filled in. */
export function serializeChecked(
  tensors: Map<string, StTensor> | Record<string, StTensor>,
  metadata: Record<string, string>,
): Uint8Array[] {
  for (const key of [HEADER_CHECKSUM_KEY, TENSORS_CHECKSUM_KEY]) {
    if (Object.hasOwn(metadata, key)) {
      throw new SafetensorsError(`checked safetensors writer: metadata key "${key}" is reserved`);
    }
  }
  const count = tensors instanceof Map ? tensors.size : Object.keys(tensors).length;
  const zeros = "0".repeat(DIGEST_HEX);
  // Placeholders of the final length, so the digests are patched in without moving a byte of the header.
  const [head, ...data] = serializeSafetensors(tensors, {
    ...metadata,
    [HEADER_CHECKSUM_KEY]: `${ALGO}:${zeros}`,
    [TENSORS_CHECKSUM_KEY]: `${ALGO}:${new Array(count).fill(zeros).join(",")}`,
  });
  patchValue(head, TENSORS_CHECKSUM_KEY, data.map(sha256).join(","));
  patchValue(head, HEADER_CHECKSUM_KEY, sha256(head));
  return [head, ...data];
}

function patchValue(head: Uint8Array, key: string, hex: string): void {
  const at = valueOffset(head, key);
  if (at === undefined)
    throw new SafetensorsError(`checked safetensors writer: no single "${key}" entry to fill`);
  head.set(Buffer.from(hex, "latin1"), at);
}

/** Atomic as `writeSafetensors`: the complete new file or the old one, never a partial one. */
export async function writeCheckedSafetensors(
  path: string,
  tensors: Map<string, StTensor> | Record<string, StTensor>,
  metadata: Record<string, string>,
): Promise<void> {
  await writeFileAtomic(path, serializeChecked(tensors, metadata));
}

export async function readCheckedSafetensors(path: string): Promise<CheckedFile> {
  return parseChecked(await readWholeFile(path), path);
}

/**
 * Where the digest of `key` starts in the header bytes: just after `"key":"sha256:`; undefined unless the
 * entry occurs exactly once (metadata keys are unique, and a tensor name cannot contain it unescaped).
 */
function valueOffset(header: Uint8Array, key: string): number | undefined {
  const needle = Buffer.from(`${JSON.stringify(key)}:"${ALGO}:`, "utf8");
  const buf = Buffer.from(header.buffer, header.byteOffset, header.byteLength);
  const at = buf.indexOf(needle);
  if (at < 0 || buf.indexOf(needle, at + 1) >= 0) return undefined;
  return at + needle.length;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });
const HEX_DIGEST = /^[0-9a-f]{64}$/;

/** Verifies a whole file held in memory, then parses it; any mismatch is a DamagedFileError naming where. */
export function parseChecked(bytes: Uint8Array, file: string): CheckedFile {
  const size = bytes.byteLength;
  const damaged = (where: string, detail: string): never => {
    throw new DamagedFileError(file, where, detail);
  };
  if (size < 8) damaged("header", `the file is ${size} bytes, cut inside the 8-byte header length`);
  const declared = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (declared > BigInt(size - 8)) {
    damaged(
      "header",
      `the header length field says ${declared} bytes but only ${size - 8} follow: the file was cut inside its header or the length field changed`,
    );
  }
  const headerEnd = 8 + Number(declared);
  let header: unknown;
  try {
    header = JSON.parse(utf8.decode(bytes.subarray(8, headerEnd)));
  } catch (err) {
    damaged("header", `bytes [8, ${headerEnd}) are not valid UTF-8 JSON (${(err as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    return damaged("header", "the header is not a JSON object");
  }
  const fields = header as Record<string, unknown>;
  const meta = (fields.__metadata__ ?? {}) as Record<string, unknown>;
  if (meta[HEADER_CHECKSUM_KEY] === undefined) return parseUnchecked(bytes, file);

  const headerDigest = digestsOf(meta[HEADER_CHECKSUM_KEY]);
  const at = valueOffset(bytes.subarray(0, headerEnd), HEADER_CHECKSUM_KEY);
  if (headerDigest?.length !== 1 || at === undefined) {
    return damaged("header", `metadata "${HEADER_CHECKSUM_KEY}" is not one "${ALGO}:<64 hex digits>"`);
  }
  const zeroed = Uint8Array.from(bytes.subarray(0, headerEnd));
  zeroed.fill(0x30, at, at + DIGEST_HEX);
  if (sha256(zeroed) !== headerDigest[0]) {
    damaged("header", `bytes [0, ${headerEnd}) do not match their ${ALGO} checksum`);
  }

  // The header is as written: its offsets and digests are the writer's.
  const regions = tensorRegions(fields, headerEnd);
  // A checksummed header the writer got wrong: the structural check names the entry.
  if (regions === undefined) return { ...parseSafetensors(bytes, file), checksum: "verified" };
  const expected = regions.length ? regions[regions.length - 1].end : headerEnd;
  if (size < expected) {
    const cut = regions.findIndex((r) => r.end > size);
    const r = regions[cut];
    damaged(
      `tensor "${r.name}"`,
      `the file is ${size} bytes of ${expected}: cut at byte ${size}, inside tensor "${r.name}" ` +
        `(bytes [${r.begin}, ${r.end})); ${regions.length - cut} of ${regions.length} tensors incomplete or missing`,
    );
  }
  if (size > expected) {
    damaged(
      "end of file",
      `${size - expected} bytes follow the data buffer (the header describes ${expected} bytes)`,
    );
  }
  const tensorDigests = digestsOf(meta[TENSORS_CHECKSUM_KEY]);
  if (tensorDigests?.length !== regions.length) {
    damaged(
      "header",
      `metadata "${TENSORS_CHECKSUM_KEY}" does not hold one digest per tensor (${regions.length})`,
    );
  }
  const bad = regions.filter((r, i) => sha256(bytes.subarray(r.begin, r.end)) !== tensorDigests?.[i]);
  if (bad.length > 0) {
    const shown = bad.slice(0, 3);
    const more = bad.length > shown.length ? ` and ${bad.length - shown.length} more` : "";
    damaged(
      `${bad.length === 1 ? "tensor" : "tensors"} ${shown.map((r) => `"${r.name}"`).join(", ")}${more}`,
      `bytes ${shown.map((r) => `[${r.begin}, ${r.end})`).join(", ")} do not match the ${ALGO} checksums written with them`,
    );
  }
  const parsed = parseSafetensors(bytes, file);
  const metadata = { ...parsed.metadata };
  delete metadata[HEADER_CHECKSUM_KEY];
  delete metadata[TENSORS_CHECKSUM_KEY];
  return { tensors: parsed.tensors, metadata, checksum: "verified" };
}

/**
 * Each tensor's bytes in the file, in data order; undefined when an entry has no [begin, end] offsets (the
 * structural check then names it).
 */
function tensorRegions(
  fields: Record<string, unknown>,
  headerEnd: number,
): { name: string; begin: number; end: number }[] | undefined {
  const regions: { name: string; begin: number; end: number }[] = [];
  for (const [name, e] of Object.entries(fields)) {
    if (name === "__metadata__") continue;
    const offsets = (e as { data_offsets?: unknown } | null)?.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(Number.isSafeInteger))
      return undefined;
    regions.push({ name, begin: headerEnd + offsets[0], end: headerEnd + offsets[1] });
  }
  return regions.sort((a, b) => a.begin - b.begin);
}

/** `"sha256:<hex>,<hex>…"` → the digests; undefined when the value has another form. */
function digestsOf(value: unknown): string[] | undefined {
  if (typeof value !== "string" || !value.startsWith(`${ALGO}:`)) return undefined;
  const list = value.slice(ALGO.length + 1);
  if (list === "") return [];
  const digests = list.split(",");
  return digests.every((d) => HEX_DIGEST.test(d)) ? digests : undefined;
}

/** A file written before checksums: its structure is all that can be checked. */
function parseUnchecked(bytes: Uint8Array, file: string): CheckedFile {
  log.debug({ file }, "no checksum in this file (written before checksums); reading it unverified");
  try {
    return { ...parseSafetensors(bytes, file), checksum: "absent" };
  } catch (err) {
    if (err instanceof SafetensorsError) {
      const detail = err.message.startsWith(`${file}: `) ? err.message.slice(file.length + 2) : err.message;
      throw new DamagedFileError(file, "structure", detail);
    }
    throw err;
  }
}
