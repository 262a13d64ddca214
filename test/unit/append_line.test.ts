import { mkdtempSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { appendLineSync, DiskFullError } from "../../common/atomic_write.js";

describe("appendLineSync (the event log's write)", () => {
  it("appends whole lines", () => {
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), "append-")), "events.jsonl");
    appendLineSync(file, "a\n");
    appendLineSync(file, "b\n");
    expect(readFileSync(file, "utf8")).toBe("a\nb\n");
  });

  it("turns a full device (/dev/full answers every write with ENOSPC) into a DiskFullError naming the file", () => {
    let caught: unknown;
    try {
      appendLineSync("/dev/full", '{"event":"task_finished"}\n');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(DiskFullError);
    const e = caught as DiskFullError;
    expect(e.file).toBe("/dev/full");
    expect(e.code).toBe("ENOSPC");
    expect(e.neededBytes).toBe(26);
    expect(e.message).toMatch(
      /^\/dev\/full: no space left to write it \(ENOSPC\): needs 26 bytes, .*the line was not appended$/,
    );
  });
});
