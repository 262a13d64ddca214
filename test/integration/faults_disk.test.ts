/**
 * Disk faults over real runs of the reference fixture (issue #15, item 3): the run directory on a small
 * tmpfs that fills while a checkpoint is written, and checkpoint and progress files that come back cut
 * short or with flipped bytes. Each case starts from a copy of one clean run, so only the last task or
 * two are trained again. The expectations come from a clean run: its files' sizes and bytes, and
 * the tensor a damaged byte lies in, found from the offsets a plain safetensors reader reports. Every
 * case resumes and ends bit-identical to the clean run.
 *
 * Mounting the tmpfs needs root (or CAP_SYS_ADMIN); where `mount` is refused the disk-full case fails
 * with the reason, it is not skipped.
 */
import { execFileSync } from "node:child_process";
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statfsSync,
  statSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { train } from "../../cli/train.js";
import { DiskFullError } from "../../common/atomic_write.js";
import { readCheckedSafetensors } from "../../common/checked_safetensors.js";
import { readSafetensorsHeader } from "../../common/safetensors.js";
import { events, expectSameRun, shortConfig } from "../helpers/distributed.js";
import { recordFault } from "../helpers/fault_table.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "inflora-faults-disk-"));
const config = shortConfig(tmp);
/** The fixture's last task: the faults strike there, so each resume retrains little. */
const LAST = 4;
const reference = path.join(tmp, "reference");
const mountPoint = path.join(tmp, "tmpfs");
let mounted = false;
const same = (cond: boolean, what: string) => expect(cond, what).toBe(true);
const ckpt = (run: string, t: number) =>
  path.join(run, "checkpoints", `task-${String(t).padStart(2, "0")}.safetensors`);
const PAGE = 4096;

beforeAll(async () => {
  await train({ config, out: reference, workers: 1, inProcess: true, resume: false });
}, 120_000);

afterAll(() => {
  if (mounted) {
    try {
      execFileSync("umount", [mountPoint], { stdio: "pipe" });
    } catch {
      // Busy (a failed case left a file open): detach it now, the kernel frees it when the file closes.
      execFileSync("umount", ["--lazy", mountPoint], { stdio: "pipe" });
    }
  }
  rmSync(tmp, { recursive: true, force: true });
});

function mountTmpfs(dir: string, bytes: number): void {
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${bytes}`, "tmpfs", dir], { stdio: "pipe" });
  } catch (err) {
    const why = String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim();
    throw new Error(
      `cannot mount a tmpfs at ${dir} (${why}): the disk-full case needs root or CAP_SYS_ADMIN ` +
        "(run the tests as root, or the container with --cap-add SYS_ADMIN)",
    );
  }
  mounted = true;
}

/** A copy of the finished clean run, to damage. */
function copyOfReference(name: string, under = tmp): string {
  const out = path.join(under, name);
  cpSync(reference, out, { recursive: true });
  return out;
}

/** The clean run as if stopped after task LAST − 1's checkpoint: a resume trains only the last task. */
function stoppedBeforeLast(name: string, under = tmp): string {
  const out = copyOfReference(name, under);
  rmSync(ckpt(out, LAST));
  rmSync(path.join(out, "predictions", path.basename(ckpt(out, LAST))));
  return out;
}

/** The tensor holding absolute byte `at` of a safetensors file, from the plain reader's header. */
async function tensorAt(file: string, at: number): Promise<string> {
  const { entries } = await readSafetensorsHeader(file);
  const headerEnd = 8 + Number(readFileSync(file).readBigUInt64LE(0));
  const hit = [...entries].find(([, e]) => headerEnd + e.offsets[0] <= at && at < headerEnd + e.offsets[1]);
  if (!hit) throw new Error(`byte ${at} of ${file} is in no tensor`);
  return hit[0];
}

function flipByte(file: string, at: number): void {
  const bytes = readFileSync(file);
  bytes[at] ^= 0x20;
  writeFileSync(file, bytes);
}

/** Resumes `out`; returns its damage reports and the ms from the resume's start to the first of them. */
async function resume(out: string) {
  const before = events(out).length;
  const started = Date.now();
  await train({ config, out, workers: 1, inProcess: true, resume: true });
  const fresh = events(out).slice(before);
  const damaged = fresh.filter((e) => e.event === "checkpoint_damaged");
  const firstReport = damaged.length ? Date.parse(String(damaged[0].time)) - started : null;
  return { fresh, damaged, detectionMs: firstReport };
}

describe("disk faults", () => {
  it("the run dir's tmpfs fills during a checkpoint: a named error, the older checkpoints intact, a bit-identical resume", async () => {
    mountTmpfs(mountPoint, 4 << 20);
    const out = stoppedBeforeLast("run", mountPoint);
    const before = events(out).length;
    const ballast = path.join(mountPoint, "ballast");
    const needed = statSync(ckpt(reference, LAST)).size;
    // After the task's last step the run writes its predictions, metrics.json and a few event lines, then
    // its checkpoint: leave room for the first three (whole pages, as tmpfs counts) but not for the checkpoint.
    const predictions = statSync(path.join(reference, "predictions", "task-04.safetensors")).size;
    const leave = (Math.ceil(predictions / PAGE) + 3) * PAGE;
    expect(leave).toBeLessThan(needed);
    let filledAt = 0;
    const failure = await train({
      config,
      out,
      workers: 1,
      inProcess: true,
      resume: true,
      onStep: ({ task, epoch, step, steps }) => {
        if (task === LAST && epoch === 1 && step === steps - 1) {
          const { bavail, bsize } = statfsSync(mountPoint);
          writeFileSync(ballast, Buffer.alloc(bavail * bsize - leave));
          filledAt = Date.now();
        }
      },
    }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(filledAt, "the ballast was written").toBeGreaterThan(0);
    expect(failure).toBeInstanceOf(DiskFullError);
    const full = failure as DiskFullError;
    expect(full.file).toBe(ckpt(out, LAST));
    expect(full.neededBytes).toBe(needed);
    expect(full.freeBytes).toBeLessThan(needed);
    expect(full.message).toMatch(
      new RegExp(
        `^${ckpt(out, LAST)}: no space left to write it \\(ENOSPC\\): needs ${needed} bytes, \\d+ bytes free`,
      ),
    );
    // The temp file is gone and the finished tasks' checkpoints are the clean run's, checksums intact.
    expect(readdirSync(path.join(out, "checkpoints")).sort()).toEqual([
      "progress.safetensors",
      ...[0, 1, 2, 3].map((t) => path.basename(ckpt(out, t))),
    ]);
    for (const t of [0, 1, 2, 3]) {
      expect(readFileSync(ckpt(out, t)).equals(readFileSync(ckpt(reference, t))), `task ${t}`).toBe(true);
      expect((await readCheckedSafetensors(ckpt(out, t))).checksum).toBe("verified");
    }
    const ev = events(out).slice(before);
    const checkpointPhase = ev.find(
      (e) => e.event === "phase_started" && e.task === LAST && e.phase === "CHECKPOINT",
    );
    const failed = ev.find((e) => e.event === "run_failed");
    expect(failed?.error).toBe(full.message);
    const detectionMs = Date.parse(String(failed?.time)) - Date.parse(String(checkpointPhase?.time));

    rmSync(ballast);
    const resumed = await resume(out);
    expect(resumed.fresh.find((e) => e.event === "run_started")).toMatchObject({
      resumed_at_task: LAST,
      entry_phase: "TRAIN",
    });
    expectSameRun(reference, out, same);
    recordFault({
      fault: "run dir full (tmpfs) during a checkpoint",
      tried: 1,
      survived: 1,
      bitIdentical: 1,
      detectionMs,
      detail: "DiskFullError names the file, bytes needed and free; resumed after space was freed",
    });
  }, 120_000);

  it("a truncated newest checkpoint is named and the resume falls back to the one before", async () => {
    const out = copyOfReference("truncated");
    const file = ckpt(out, LAST);
    const cut = Math.floor(statSync(file).size / 2);
    const cutInto = await tensorAt(file, cut);
    truncateSync(file, cut);
    const r = await resume(out);
    expect(r.damaged).toHaveLength(1);
    expect(r.damaged[0]).toMatchObject({
      file: "checkpoints/task-04.safetensors",
      where: `tensor "${cutInto}"`,
      fallback: "resuming from task-03.safetensors",
    });
    expect(r.fresh.find((e) => e.event === "run_started")?.resumed_at_task).toBe(LAST);
    expectSameRun(reference, out, same);
    recordFault({
      fault: "checkpoint truncated",
      tried: 1,
      survived: 1,
      bitIdentical: 1,
      detectionMs: r.detectionMs,
      detail: "from --resume's start to the checkpoint_damaged event naming the tensor cut into",
    });
  }, 60_000);

  it("flipped bytes in a checkpoint's data and in an older one's header: both named, the resume goes back two", async () => {
    const out = copyOfReference("flipped");
    const newest = ckpt(out, LAST);
    const { entries } = await readSafetensorsHeader(newest);
    const headerEnd = 8 + Number(readFileSync(newest).readBigUInt64LE(0));
    const head = entries.get("heads.4.weight");
    if (!head) throw new Error("the clean checkpoint has no heads.4.weight");
    flipByte(newest, headerEnd + Math.floor((head.offsets[0] + head.offsets[1]) / 2));
    // A hex digit of config_sha256 turned into another one: still valid JSON, a plausible header.
    const older = ckpt(out, LAST - 1);
    const at = readFileSync(older).indexOf('"config_sha256":"') + '"config_sha256":"'.length + 5;
    const bytes = readFileSync(older);
    bytes[at] = bytes[at] === 0x61 ? 0x62 : 0x61;
    writeFileSync(older, bytes);
    const r = await resume(out);
    expect(r.damaged.map((d) => [d.file, d.where, d.fallback])).toEqual([
      ["checkpoints/task-04.safetensors", 'tensor "heads.4.weight"', "resuming from task-03.safetensors"],
      ["checkpoints/task-03.safetensors", "header", "resuming from task-02.safetensors"],
    ]);
    expect(r.fresh.find((e) => e.event === "run_started")?.resumed_at_task).toBe(LAST - 1);
    expectSameRun(reference, out, same);
    recordFault({
      fault: "checkpoint bytes flipped (data of one, header of another)",
      tried: 2,
      survived: 2,
      bitIdentical: 2,
      detectionMs: r.detectionMs,
      detail: "from --resume's start to the checkpoint_damaged events naming tensor and header",
    });
  }, 60_000);

  it("a damaged progress file is named and the task starts again from its first phase", async () => {
    const out = stoppedBeforeLast("progress");
    const crash = new Error("simulated coordinator crash");
    await expect(
      train({
        config,
        out,
        workers: 1,
        inProcess: true,
        resume: true,
        onStep: ({ task, epoch, step }) => {
          if (task === LAST && epoch === 1 && step === 1) throw crash;
        },
      }),
    ).rejects.toBe(crash);
    const progress = path.join(out, "checkpoints", "progress.safetensors");
    const at = Math.floor(statSync(progress).size * 0.75);
    const hit = await tensorAt(progress, at);
    flipByte(progress, at);
    const r = await resume(out);
    expect(r.damaged).toHaveLength(1);
    expect(r.damaged[0]).toMatchObject({
      file: "checkpoints/progress.safetensors",
      where: `tensor "${hit}"`,
      fallback: `starting task ${LAST} from its first phase`,
    });
    expect(r.fresh.find((e) => e.event === "run_started")).toMatchObject({
      resumed_at_task: LAST,
      entry_phase: "COVARIANCE_PRE",
    });
    expectSameRun(reference, out, same);
    recordFault({
      fault: "progress file damaged (byte flipped)",
      tried: 1,
      survived: 1,
      bitIdentical: 1,
      detectionMs: r.detectionMs,
      detail: "from --resume's start to the checkpoint_damaged event; the task restarts from its first phase",
    });
  }, 60_000);
});
