/**
 * The variants on the fixture with short schedules: InfLoRA-b5 (GPM only, always remove), the
 * sequential-LoRA baseline, and SGD. Checked on the run's own checkpoints: every designed B_t is
 * interference-free with respect to the basis stored after task t−1.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { train } from "../../cli/train.js";
import { readSafetensors } from "../../common/safetensors.js";
import { mat, matmul, matmulABt, sub } from "../../coordinator/linalg/matrix.js";
import { frob, REFERENCE_DIR } from "../helpers/reference_compare.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "inflora-variants-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const D = 48;
const r = 4;
const name = (t: number) => `task-${String(t).padStart(2, "0")}.safetensors`;

async function runVariant(label: string, overrides: Record<string, unknown>): Promise<string> {
  const cfg = JSON.parse(readFileSync(path.join(REFERENCE_DIR, "tiny_config.json"), "utf8"));
  Object.assign(cfg, { init_epoch: 1, epochs: 1 }, overrides);
  cfg.weights = path.join(REFERENCE_DIR, cfg.weights);
  cfg.data_path = path.join(REFERENCE_DIR, cfg.data_path);
  const file = path.join(tmp, `${label}.json`);
  writeFileSync(file, JSON.stringify(cfg));
  const out = path.join(tmp, label);
  await train({ config: file, out, workers: 1, inProcess: true, resume: false });
  return out;
}

/** ‖B_t U‖ for remove layers and ‖B_t − B_t U Uᵀ‖ for retain layers, U after task t−1, largest over t, blocks. */
async function interference(run: string): Promise<number> {
  let worst = 0;
  for (let t = 1; t < 5; t++) {
    const prev = await readSafetensors(path.join(run, "checkpoints", name(t - 1)));
    const cur = await readSafetensors(path.join(run, "checkpoints", name(t)));
    const types = JSON.parse(prev.metadata.dualgpm_types) as string[];
    for (let i = 0; i < 3; i++) {
      const U = prev.tensors.get(`dualgpm.${i}.basis`)!;
      const Um = mat(D, U.shape[1], U.data as Float64Array);
      const B = mat(
        r,
        D,
        Float64Array.from(cur.tensors.get(`blocks.${i}.attn.inflora.B_k.${t}`)!.data as Float32Array),
      );
      const BU = matmul(B, Um);
      const residual = types[i] === "remove" ? frob(BU) : frob(sub(B, matmulABt(BU, Um)));
      worst = Math.max(worst, residual / frob(B));
    }
  }
  return worst;
}

describe("variants", () => {
  it("InfLoRA-b5 keeps every layer remove, grows its bases and designs B orthogonal to them", async () => {
    const run = await runVariant("b5", { model_name: "InfLoRAb5" });
    let widths = [0, 0, 0];
    for (let t = 0; t < 5; t++) {
      const ck = await readSafetensors(path.join(run, "checkpoints", name(t)));
      expect(JSON.parse(ck.metadata.dualgpm_types)).toEqual(["remove", "remove", "remove"]);
      const w = [0, 1, 2].map((i) => ck.tensors.get(`dualgpm.${i}.basis`)!.shape[1]);
      w.forEach((x, i) => {
        expect(x).toBeGreaterThanOrEqual(widths[i]);
      });
      widths = w;
    }
    // Float32 storage of B bounds what "orthogonal" can mean here.
    expect(await interference(run)).toBeLessThan(1e-5);
  }, 300_000);

  it("InfLoRA (Adam, DualGPM) designs B orthogonal to remove bases and inside retain bases", async () => {
    const run = await runVariant("inflora", {});
    expect(await interference(run)).toBeLessThan(1e-5);
  }, 300_000);

  it("sequential LoRA runs without covariance passes and with SGD", async () => {
    const run = await runVariant("seqlora", {
      model_name: "SeqLoRA",
      optim: "sgd",
      init_lr: 0.05,
      lrate: 0.05,
    });
    const metrics = JSON.parse(readFileSync(path.join(run, "metrics.json"), "utf8"));
    expect(metrics.accuracy_matrix).toHaveLength(5);
    const events = readFileSync(path.join(run, "events.jsonl"), "utf8");
    expect(events).not.toMatch(
      /"phase":"COVARIANCE_PRE"[^\n]*\n[^\n]*"phase":"DESIGN"[^\n]*\n[^\n]*"phase":"TRAIN"[^\n]*\n[^\n]*"phase":"COVARIANCE_POST"/,
    );
    expect(events).not.toMatch(/"phase":"DUALGPM"/);
  }, 300_000);
});
