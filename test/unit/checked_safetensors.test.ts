/**
 * The checksum layer of checkpoint and progress files (common/checked_safetensors.ts): what it writes is
 * checked against SHA-256 computed here from the file's bytes, and every kind of damage (a cut at many
 * offsets, a flipped byte in the header or the data, bytes appended) is refused with the file and the
 * region named, where the region is found here from the offsets a plain safetensors reader reports.
 */
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import {
  DamagedFileError,
  HEADER_CHECKSUM_KEY,
  readCheckedSafetensors,
  TENSORS_CHECKSUM_KEY,
  writeCheckedSafetensors,
} from "../../common/checked_safetensors.js";
import { log } from "../../common/log.js";
import { readSafetensorsHeader, type StTensor, writeSafetensors } from "../../common/safetensors.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "inflora-checked-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

const tensors = new Map<string, StTensor>([
  ["a.weight", { dtype: "F32", shape: [3, 5], data: Float32Array.from({ length: 15 }, (_, i) => i / 7) }],
  ["b.basis", { dtype: "F64", shape: [4, 2], data: Float64Array.from({ length: 8 }, (_, i) => -i * 1.5) }],
  ["c.bias", { dtype: "F32", shape: [3], data: new Float32Array([1, 2, 3]) }],
  ["d.empty", { dtype: "F64", shape: [4, 0], data: new Float64Array(0) }],
]);
const metadata = { format: "test/1", task: "3", config_sha256: "ab".repeat(32) };

let n = 0;
async function written(): Promise<string> {
  const file = path.join(tmp, `f${n++}.safetensors`);
  await writeCheckedSafetensors(file, tensors, metadata);
  return file;
}

/** Each tensor's absolute byte range, from the plain reader's header (not from the layer under test). */
async function layout(file: string) {
  const { entries, metadata: meta } = await readSafetensorsHeader(file);
  const bytes = readFileSync(file);
  const headerEnd = 8 + Number(bytes.readBigUInt64LE(0));
  const regions = [...entries]
    .map(([name, e]) => ({ name, begin: headerEnd + e.offsets[0], end: headerEnd + e.offsets[1] }))
    .sort((a, b) => a.begin - b.begin || a.end - b.end);
  return { bytes, headerEnd, regions, meta };
}

async function damagedBy(file: string, bytes: Uint8Array): Promise<DamagedFileError> {
  writeFileSync(file, bytes);
  const err = await readCheckedSafetensors(file).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `${file} should be refused`).toBeInstanceOf(DamagedFileError);
  const d = err as DamagedFileError;
  expect(d.file).toBe(file);
  expect(d.message.startsWith(`${file}: damaged ${d.where}: `)).toBe(true);
  return d;
}

describe("checked safetensors", () => {
  it("writes SHA-256 digests of the header and of each tensor's bytes, and reads the file back", async () => {
    const file = await written();
    const { bytes, headerEnd, regions, meta } = await layout(file);
    const header = meta[HEADER_CHECKSUM_KEY];
    expect(header).toMatch(/^sha256:[0-9a-f]{64}$/);
    const hex = header.slice("sha256:".length);
    const zeroed = Buffer.from(bytes.subarray(0, headerEnd));
    const at = zeroed.indexOf(hex);
    zeroed.write("0".repeat(64), at, "latin1");
    expect(sha256(zeroed)).toBe(hex);
    expect(meta[TENSORS_CHECKSUM_KEY]).toBe(
      `sha256:${regions.map((r) => sha256(bytes.subarray(r.begin, r.end))).join(",")}`,
    );
    const back = await readCheckedSafetensors(file);
    expect(back.checksum).toBe("verified");
    expect(back.metadata).toEqual(metadata);
    for (const [name, t] of tensors) {
      expect(back.tensors.get(name)?.shape).toEqual(t.shape);
      expect([...(back.tensors.get(name)?.data ?? [])]).toEqual([...t.data]);
    }
  });

  it("names the header or the tensor a truncation cuts into, at every kind of offset", async () => {
    const file = await written();
    const { bytes, headerEnd, regions } = await layout(file);
    const [first, second, , last] = regions;
    expect(first.end).toBeGreaterThan(first.begin + 4);
    const cuts = [
      0,
      5,
      8,
      8 + 20,
      headerEnd - 1,
      headerEnd,
      first.begin + 4,
      second.begin,
      second.begin + 3,
      last.begin - 1,
      bytes.length - 1,
    ];
    for (const cut of cuts) {
      const d = await damagedBy(file, bytes.subarray(0, cut));
      const inTensor = regions.find((r) => r.end > cut && r.end > r.begin);
      const expected = cut < headerEnd ? "header" : `tensor "${inTensor?.name}"`;
      expect(d.where, `cut at ${cut}`).toBe(expected);
      if (cut >= headerEnd) expect(d.message).toContain(`${cut} bytes of ${bytes.length}`);
    }
  });

  it("finds a flipped byte in the header: a metadata value, its own digest, the tensor digests, the JSON, the length", async () => {
    const file = await written();
    const { bytes, meta } = await layout(file);
    const text = Buffer.from(bytes).toString("latin1");
    const places = {
      "a metadata value": text.indexOf(metadata.config_sha256) + 10,
      "the header digest": text.indexOf(meta[HEADER_CHECKSUM_KEY]) + 20,
      "the tensor digests": text.indexOf(meta[TENSORS_CHECKSUM_KEY]) + 30,
      "a tensor's shape": text.indexOf('"shape":[3,5]') + 9,
      "the opening brace": 8,
      "the length field": 0,
    };
    for (const [what, at] of Object.entries(places)) {
      const copy = Uint8Array.from(bytes);
      copy[at] ^= 0x01;
      const d = await damagedBy(file, copy);
      expect(d.where, what).toBe("header");
    }
  });

  it("names the tensor whose bytes changed, and every one when several did", async () => {
    const file = await written();
    const { bytes, regions } = await layout(file);
    for (const r of regions.filter((x) => x.end > x.begin)) {
      const copy = Uint8Array.from(bytes);
      copy[r.begin + Math.floor((r.end - r.begin) / 2)] ^= 0x80;
      expect((await damagedBy(file, copy)).where).toBe(`tensor "${r.name}"`);
    }
    const copy = Uint8Array.from(bytes);
    copy[regions[0].begin] ^= 0x10;
    copy[regions[2].end - 1] ^= 0x10;
    const d = await damagedBy(file, copy);
    expect(d.where).toBe(`tensors "${regions[0].name}", "${regions[2].name}"`);
  });

  it("refuses bytes appended after the data buffer", async () => {
    const file = await written();
    const { bytes } = await layout(file);
    const d = await damagedBy(file, Buffer.concat([bytes, Buffer.from("xyz")]));
    expect(d.where).toBe("end of file");
    expect(d.message).toContain("3 bytes follow the data buffer");
  });

  it("reads a file written before checksums, unverified, and says so in a debug line", async () => {
    const file = path.join(tmp, "old.safetensors");
    await writeSafetensors(file, tensors, metadata);
    const debug = vi.spyOn(log, "debug");
    try {
      const back = await readCheckedSafetensors(file);
      expect(back.checksum).toBe("absent");
      expect(back.metadata).toEqual(metadata);
      expect([...(back.tensors.get("b.basis")?.data ?? [])]).toEqual([
        ...(tensors.get("b.basis")?.data ?? []),
      ]);
      expect(debug).toHaveBeenCalledWith({ file }, expect.stringMatching(/no checksum/));
    } finally {
      debug.mockRestore();
    }
    // Without checksums only the structure can be checked: a cut is still found, a flipped data byte not.
    const bytes = readFileSync(file);
    expect((await damagedBy(file, bytes.subarray(0, bytes.length - 5))).where).toBe("structure");
  });

  it("keeps its metadata keys to itself", async () => {
    await expect(
      writeCheckedSafetensors(path.join(tmp, "x.safetensors"), tensors, { [HEADER_CHECKSUM_KEY]: "mine" }),
    ).rejects.toThrow(/"checksum_header" is reserved/);
  });
});
