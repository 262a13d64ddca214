/**
 * The covariance reduction: the workers' float32 shard sums added in float64 in shard order (whatever
 * the rounds, i.e. the number of workers), divided by the token count and symmetrised — checked bit for
 * bit against that definition written out as a plain loop, and against the covariance of the tokens.
 */
import { describe, expect, it } from "vitest";
import type { CovarianceResult } from "../../common/protocol.js";
import { CovarianceSum } from "../../coordinator/inflora/covariance.js";
import { mulberry32 } from "../helpers/tiny_vit.js";

const D = 5;
const depth = 2;

/** Shard s: `n` random tokens per block and their float32 Σ x xᵀ (as a worker sums them). */
function shards(count: number, seed: number): { results: CovarianceResult[]; tokens: Float64Array[][] } {
  const rnd = mulberry32(seed);
  const tokens: Float64Array[][] = [];
  const results = Array.from({ length: count }, (_, index) => {
    const n = 3 + index;
    const xs = Array.from({ length: depth }, () =>
      Array.from({ length: n }, () => Float64Array.from({ length: D }, () => Math.fround(rnd() * 4 - 2))),
    );
    tokens.push(xs.flat());
    const sums = xs.map((block) => {
      const s = new Float32Array(D * D);
      for (const x of block)
        for (let r = 0; r < D; r++) for (let c = 0; c < D; c++) s[r * D + c] += x[r] * x[c];
      return s;
    });
    return { index, tokens: n, sums };
  });
  return { results, tokens };
}

const bits = (a: Float64Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("hex");

describe("covariance reduction", () => {
  const { results } = shards(7, 11);

  it("is the in-order float64 sum over shards, normalised, with both triangles' mean", () => {
    const sum = new CovarianceSum(depth, D);
    sum.add(results);
    const got = sum.finish();
    const N = results.reduce((a, r) => a + r.tokens, 0);
    for (let i = 0; i < depth; i++) {
      const want = new Float64Array(D * D);
      for (let k = 0; k < D * D; k++) {
        let acc = 0;
        for (const r of results) acc += r.sums[i][k];
        want[k] = acc / N;
      }
      const sym = Float64Array.from(want);
      for (let r = 0; r < D; r++)
        for (let c = 0; c < D; c++) if (r !== c) sym[r * D + c] = (want[r * D + c] + want[c * D + r]) / 2;
      expect(got[i].rows).toBe(D);
      expect(bits(got[i].data)).toBe(bits(sym));
    }
  });

  it("gives the same bits whatever rounds the shards arrive in (1, 2 or 3 workers)", () => {
    const by = (perRound: number) => {
      const sum = new CovarianceSum(depth, D);
      for (let s = 0; s < results.length; s += perRound) sum.add(results.slice(s, s + perRound));
      return sum.finish().map((m) => bits(m.data));
    };
    expect(by(2)).toEqual(by(1));
    expect(by(3)).toEqual(by(1));
  });

  it("is the tokens' second-moment matrix up to float32 rounding, and exactly symmetric", () => {
    const sum = new CovarianceSum(depth, D);
    sum.add(results);
    const got = sum.finish();
    const N = results.reduce((a, r) => a + r.tokens, 0);
    // Recompute block 0 from the tokens themselves, in float64.
    const { tokens } = shards(7, 11);
    const want = new Float64Array(D * D);
    tokens.forEach((shard, s) => {
      for (const x of shard.slice(0, results[s].tokens))
        for (let r = 0; r < D; r++) for (let c = 0; c < D; c++) want[r * D + c] += (x[r] * x[c]) / N;
    });
    for (let k = 0; k < D * D; k++) expect(got[0].data[k]).toBeCloseTo(want[k], 5);
    for (let r = 0; r < D; r++)
      for (let c = 0; c < D; c++) expect(got[1].data[r * D + c]).toBe(got[1].data[c * D + r]);
  });
});
