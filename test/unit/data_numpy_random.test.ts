import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { MersenneTwister, numpyPermutation } from "../../common/data/numpy_random.js";

const fixture = JSON.parse(
  readFileSync(new URL("../fixtures/reference/numpy_class_orders.json", import.meta.url), "utf8"),
) as { cases: { seed: number; n: number; order: number[] }[] };

describe("numpy legacy RandomState", () => {
  it("MT19937 seeded with 5489 gives the reference generator's first outputs", () => {
    // Matsumoto & Nishimura's mt19937ar with init_genrand(5489): the first two outputs.
    const mt = new MersenneTwister(5489);
    expect([mt.nextUint32(), mt.nextUint32()]).toEqual([3499211612, 581869302]);
  });

  it("reproduces numpy's own np.random.permutation for every fixture case", () => {
    expect(fixture.cases.length).toBeGreaterThanOrEqual(15);
    for (const c of fixture.cases) {
      expect(numpyPermutation(c.seed, c.n), `seed ${c.seed}, n ${c.n}`).toEqual(c.order);
    }
  });

  it("accepts the whole 32-bit seed range and refuses what numpy refuses", () => {
    expect(numpyPermutation(2 ** 32 - 1, 5).sort()).toEqual([0, 1, 2, 3, 4]);
    expect(() => numpyPermutation(-1, 5)).toThrow(/seed/);
    expect(() => numpyPermutation(2 ** 32, 5)).toThrow(/seed/);
    expect(() => numpyPermutation(1.5, 5)).toThrow(/seed/);
    expect(numpyPermutation(0, 0)).toEqual([]);
    expect(numpyPermutation(0, 1)).toEqual([0]);
  });
});
