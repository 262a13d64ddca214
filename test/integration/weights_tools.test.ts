/**
 * `inflora weights`: import (through the JAX→timm table, bit-identical to the fixture's own timm file),
 * inspect (safetensors header only, and .npz), and fetch against a local HTTP server serving the fixture:
 * right digest → the file lands; wrong digest or HTTP 404 → a clear error and nothing left behind.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FETCH_PRESETS } from "../../cli/weights_presets.js";
import { fetchWeights, importWeights, inspectWeights } from "../../cli/weights_tools.js";
import { readSafetensors } from "../../common/safetensors.js";

const ROOT = path.resolve(import.meta.dirname, "../..");
const FIXTURE = path.join(ROOT, "test", "fixtures", "reference");
const NPZ = path.join(FIXTURE, "tiny_vit.npz");
const NPZ_BYTES = readFileSync(NPZ);
const NPZ_SHA = createHash("sha256").update(NPZ_BYTES).digest("hex");
const BASE = "vit_base_patch16_224_in21k";

const tmp = mkdtempSync(path.join(os.tmpdir(), "inflora-weights-"));
let server: Server;
let baseUrl = "";
const requests: string[] = [];

beforeAll(async () => {
  // Serves the fixture at the preset's path (and nothing else), like the real bucket would.
  server = createServer((req, res) => {
    requests.push(req.url ?? "");
    if (req.url === `/vit_models/${FETCH_PRESETS[BASE].path}`) {
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": NPZ_BYTES.length });
      res.end(NPZ_BYTES);
    } else {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found");
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/vit_models`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  rmSync(tmp, { recursive: true, force: true });
});

const bytesOf = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Runs the CLI without blocking this process's event loop (the test's HTTP server must keep answering). */
function cli(...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [path.join(ROOT, "bin", "inflora.js"), ...args],
      { cwd: ROOT, env: { ...process.env, INFLORA_LOG_LEVEL: "warn" }, timeout: 60_000 },
      (err, stdout, stderr) =>
        resolve({ status: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }),
    );
  });
}

describe("weights import", () => {
  it("converts the fixture .npz to the fixture's own timm tensors, bit for bit, and records the source", async () => {
    const out = path.join(tmp, "imported.safetensors");
    const s = await importWeights(NPZ, out);
    expect(s.sourceSha256).toBe(NPZ_SHA);
    const mine = await readSafetensors(out);
    const theirs = await readSafetensors(path.join(FIXTURE, "tiny_vit.safetensors"));
    expect([...mine.tensors.keys()].sort()).toEqual([...theirs.tensors.keys()].sort());
    for (const [name, t] of theirs.tensors) {
      expect({ name, shape: mine.tensors.get(name)!.shape }).toEqual({ name, shape: t.shape });
      expect(
        bytesOf(mine.tensors.get(name)!.data as Float32Array).equals(bytesOf(t.data as Float32Array)),
      ).toBe(true);
    }
    expect(mine.metadata).toMatchObject({
      source: "tiny_vit.npz",
      source_sha256: NPZ_SHA,
      embed_dim: "48",
      depth: "3",
      num_heads: "3",
      img_size: "32",
      patch_size: "4",
    });
  });

  it("a file that is not an .npz is a WeightsError naming it", async () => {
    await expect(
      importWeights(path.join(FIXTURE, "tiny_vit.safetensors"), path.join(tmp, "x.safetensors")),
    ).rejects.toMatchObject({
      name: "WeightsError",
      message: expect.stringContaining("tiny_vit.safetensors"),
    });
  });
});

describe("weights inspect", () => {
  it("reads a .safetensors header: names, dtypes, shapes, parameters and dimensions", async () => {
    const info = await inspectWeights(path.join(FIXTURE, "tiny_vit.safetensors"));
    expect(info.format).toBe("safetensors");
    expect(info.tensors.find((t) => t.name === "blocks.0.attn.qkv.weight")).toEqual({
      name: "blocks.0.attn.qkv.weight",
      dtype: "F32",
      shape: [144, 48],
    });
    expect(info.dims).toMatchObject({
      imgSize: 32,
      patchSize: 4,
      inChans: 3,
      embedDim: 48,
      depth: 3,
      mlpHidden: 192,
      numClasses: 10,
    });
    // Width 48 is no timm preset and this file has no metadata: the heads cannot be told.
    expect(info.dims.numHeads).toBeUndefined();
    const block = 2 * 48 + (144 * 48 + 144) + (48 * 48 + 48) + 2 * 48 + (192 * 48 + 192) + (48 * 192 + 48);
    // patch conv + bias, cls, pos, blocks, final norm, head
    expect(info.parameters).toBe(48 * 3 * 16 + 48 + 48 + 65 * 48 + 3 * block + 2 * 48 + (10 * 48 + 10));
  });

  it("reads an .npz under its own names, with the heads from the attention kernels", async () => {
    const info = await inspectWeights(NPZ);
    expect(info.format).toBe("npz");
    expect(info.tensors.find((t) => t.name === "embedding/kernel")).toMatchObject({ shape: [4, 4, 3, 48] });
    expect(info.dims).toMatchObject({
      embedDim: 48,
      depth: 3,
      numHeads: 3,
      numHeadsFrom: "kernel shape",
      imgSize: 32,
    });
    const st = await inspectWeights(path.join(FIXTURE, "tiny_vit.safetensors"));
    expect(info.parameters).toBe(st.parameters);
  });

  it("prints a table through the CLI", async () => {
    const r = await cli("weights", "inspect", NPZ);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("embedding/kernel");
    expect(r.stdout).toMatch(
      /ViT: img_size 32, patch_size 4, in_chans 3, embed_dim 48, depth 3, num_heads 3/,
    );
  });
});

describe("weights on a PyTorch .pth", () => {
  const DINO = path.join(ROOT, "test", "fixtures", "pth", "tiny_vit_dino_full.pth");

  it("inspect shows the layout found, the others and the names left out", async () => {
    const r = await cli("weights", "inspect", DINO);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("pth, 762,459 bytes");
    expect(r.stdout).toContain(
      "layout teacher: DINO/iBOT full checkpoint: the teacher network (the file also has: student)",
    );
    expect(r.stdout).toContain("left out: head.mlp.0.weight, head.last_layer.weight_g");
    expect(r.stdout).toMatch(/blocks\.0\.attn\.qkv\.weight\s+F32\s+\[144, 48\]/);
  });

  it("import refuses a pickle global, naming it, with exit code 3", async () => {
    const r = await cli(
      "weights",
      "import",
      path.join(ROOT, "test", "fixtures", "pth", "tiny_vit_with_args.pth"),
      "--out",
      path.join(tmp, "args.safetensors"),
    );
    expect(r.status).toBe(3);
    expect(r.stderr).toMatch(/tiny_vit_with_args\/data\.pkl: refusing global argparse\.Namespace/);
    expect(readdirSync(tmp)).not.toContain("args.safetensors");
  });
});

describe("weights fetch", () => {
  const leftovers = (dir: string) => {
    try {
      return readdirSync(dir);
    } catch {
      return [];
    }
  };

  it("right digest: the file lands under its model name with the served bytes", async () => {
    const dir = path.join(tmp, "ok");
    const r = await fetchWeights({ preset: BASE, outDir: dir, baseUrl, sha256: NPZ_SHA });
    expect(r).toMatchObject({
      sha256: NPZ_SHA,
      bytes: NPZ_BYTES.length,
      verified: true,
      alreadyPresent: false,
    });
    expect(r.file).toBe(path.join(dir, `${BASE}.npz`));
    expect(readFileSync(r.file).equals(NPZ_BYTES)).toBe(true);
    expect(leftovers(dir)).toEqual([`${BASE}.npz`]);
    const again = await fetchWeights({ preset: BASE, outDir: dir, baseUrl, sha256: NPZ_SHA });
    expect(again.alreadyPresent).toBe(true);
  });

  it("wrong digest: a clear error with both digests and no file left", async () => {
    const dir = path.join(tmp, "bad");
    const wrong = "0".repeat(64);
    await expect(fetchWeights({ preset: BASE, outDir: dir, baseUrl, sha256: wrong })).rejects.toMatchObject({
      name: "WeightsError",
      message: expect.stringMatching(
        new RegExp(`SHA-256 mismatch: downloaded ${NPZ_SHA}, expected ${wrong}`),
      ),
    });
    expect(leftovers(dir)).toEqual([]);
  });

  it("HTTP 404: a clear error naming the URL and no file left", async () => {
    const dir = path.join(tmp, "missing");
    await expect(
      fetchWeights({ preset: "vit_tiny_patch16_224_in21k", outDir: dir, baseUrl, sha256: NPZ_SHA }),
    ).rejects.toThrow(/Ti_16-i21k.*HTTP 404/);
    expect(leftovers(dir)).toEqual([]);
  });

  it("no known digest: refuses before downloading unless told otherwise", async () => {
    const before = requests.length;
    const dir = path.join(tmp, "unknown");
    await expect(fetchWeights({ preset: BASE, outDir: dir, baseUrl })).rejects.toThrow(
      /no SHA-256 is known.*--sha256/,
    );
    expect(requests.length).toBe(before);
    const r = await fetchWeights({ preset: BASE, outDir: dir, baseUrl, allowUnverified: true });
    expect(r).toMatchObject({ sha256: NPZ_SHA, verified: false });
  });

  it("the CLI exits 3 on a digest mismatch and 0 on success", async () => {
    const bad = await cli(
      "weights",
      "fetch",
      BASE,
      "--out",
      path.join(tmp, "cli-bad"),
      "--base-url",
      baseUrl,
      "--sha256",
      "f".repeat(64),
    );
    expect(bad.status).toBe(3);
    expect(bad.stderr).toMatch(/inflora: .*SHA-256 mismatch/);
    expect(leftovers(path.join(tmp, "cli-bad"))).toEqual([]);
    const ok = await cli(
      "weights",
      "fetch",
      BASE,
      "--out",
      path.join(tmp, "cli-ok"),
      "--base-url",
      baseUrl,
      "--sha256",
      NPZ_SHA,
    );
    expect(ok.status).toBe(0);
    expect(ok.stdout).toContain(`sha256 ${NPZ_SHA} (verified)`);
  });
});
