import { afterAll, describe, expect, it } from "vitest";
import { eighDescending } from "../../coordinator/linalg/eigh.js";
import { mat } from "../../coordinator/linalg/matrix.js";
import { closeEighPool, eighMany } from "../../coordinator/linalg/parallel.js";
import { mulberry32, randomSymmetric } from "./linalg-helpers.js";

afterAll(async () => {
  await closeEighPool();
});

describe("eighMany", () => {
  it("returns exactly what eighDescending returns, in order, on worker threads", async () => {
    const rng = mulberry32(21);
    const mats = [30, 1, 64, 12, 40].map((n) => randomSymmetric(n, rng));
    const copies = mats.map((a) => a.data.slice());
    const got = await eighMany(mats, { threads: 2 });
    expect(got.length).toBe(mats.length);
    mats.forEach((a, k) => {
      const want = eighDescending(a);
      expect(got[k].values).toEqual(want.values);
      expect(got[k].vectors).toEqual(want.vectors);
      expect(a.data).toEqual(copies[k]);
    });
    // The pool is reused by a second call.
    const again = await eighMany(mats.slice(0, 3), { threads: 2 });
    expect(again[2].values).toEqual(got[2].values);
  });

  it("runs inline for one thread or one matrix, and handles an empty list", async () => {
    const a = randomSymmetric(10, mulberry32(22));
    expect((await eighMany([a], { threads: 4 }))[0].values).toEqual(eighDescending(a).values);
    expect((await eighMany([a, a], { threads: 1 }))[1].values).toEqual(eighDescending(a).values);
    expect(await eighMany([])).toEqual([]);
  });

  it("reports a failure in a worker as a rejection", async () => {
    const bad = mat(2, 2, new Float64Array([1, 0, Number.NaN, 1]));
    const good = randomSymmetric(5, mulberry32(23));
    await expect(eighMany([good, bad], { threads: 2 })).rejects.toThrow(/non-finite/);
    await expect(eighMany([mat(2, 3), good], { threads: 2 })).rejects.toThrow(/square/);
    // Still usable afterwards.
    expect((await eighMany([good, good], { threads: 2 }))[0].values).toEqual(eighDescending(good).values);
  });
});
