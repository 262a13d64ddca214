/**
 * The committed proto/gen matches what `npm run proto` generates from proto/ now, the .proto files pass
 * buf lint, and only the transport imports the generated code. Regenerates into a temp dir (offline: buf
 * from npm drives the local ts-proto plugin).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const root = path.resolve(import.meta.dirname, "../..");
const buf = path.join(root, "node_modules/.bin/buf");
const committed = path.join(root, "proto/gen");
const scratch = mkdtempSync(path.join(tmpdir(), "inflora-proto-"));

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function runBuf(args: string[]): void {
  if (!existsSync(buf))
    throw new Error(`${buf} is missing: run npm ci (buf comes from the @bufbuild/buf dev dependency)`);
  const r = spawnSync(buf, args, {
    cwd: root,
    encoding: "utf8",
    env: { ...process.env, BUF_CACHE_DIR: path.join(scratch, "cache") },
  });
  if (r.status !== 0) throw new Error(`buf ${args.join(" ")} failed (${r.status}):\n${r.stdout}${r.stderr}`);
}

function files(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

/**
 * The gRPC transport and the tensor codec; algorithm code never sees wire types (docs/design.md#layering).
 */
const MAY_IMPORT_GEN = [
  /^common\/tensor_codec\.ts$/,
  /^common\/grpc_[a-z_]+\.ts$/,
  /^worker\/grpc_[a-z_]+\.ts$/,
  /^coordinator\/transport\//,
  // The parameters' encoding on NATS (a transport too).
  /^common\/param_set\.ts$/,
];

describe("generated protocol code", () => {
  it("is imported by the transport only", () => {
    const offenders = ["common", "coordinator", "worker", "cli"].flatMap((top) =>
      files(path.join(root, top))
        .map((f) => `${top}/${f}`)
        .filter((f) => f.endsWith(".ts") && !MAY_IMPORT_GEN.some((re) => re.test(f)))
        .filter((f) => /from\s+["'][^"']*proto\/gen\//.test(readFileSync(path.join(root, f), "utf8"))),
    );
    expect(offenders, "these files import proto/gen; go through common/protocol.ts instead").toEqual([]);
  });

  it("passes buf lint", () => {
    runBuf(["lint"]);
  });

  it("is up to date with proto/ (else run `npm run proto` and commit proto/gen)", () => {
    runBuf(["generate", "--template", "buf.gen.yaml", "-o", scratch]);
    const fresh = path.join(scratch, "proto/gen");
    const want = files(fresh);
    const have = files(committed);
    expect(want.length).toBeGreaterThan(0);
    const stale = [
      ...want.filter((f) => !have.includes(f)).map((f) => `proto/gen/${f} (missing)`),
      ...have.filter((f) => !want.includes(f)).map((f) => `proto/gen/${f} (no longer generated)`),
      ...want
        .filter((f) => have.includes(f))
        .filter(
          (f) => readFileSync(path.join(fresh, f), "utf8") !== readFileSync(path.join(committed, f), "utf8"),
        )
        .map((f) => `proto/gen/${f} (differs)`),
    ];
    expect(stale, `stale generated code — run \`npm run proto\`:\n  ${stale.join("\n  ")}`).toEqual([]);
  });
});
