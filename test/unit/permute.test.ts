/** numpy's transpose(perm) on the host, against the definition out[i_perm] = src[i] element by element. */
import { describe, expect, it } from "vitest";
import { permute } from "../../common/permute.js";

/** Element of `src` (row-major `shape`) at the index whose axis perm[k] is out-index k. */
function byDefinition(src: ArrayLike<number | bigint>, shape: number[], perm: number[]): (number | bigint)[] {
  const outShape = perm.map((p) => shape[p]);
  const count = shape.reduce((a, b) => a * b, 1);
  const out: (number | bigint)[] = [];
  for (let j = 0; j < count; j++) {
    const outIdx: number[] = [];
    let rest = j;
    for (let k = outShape.length - 1; k >= 0; k--) {
      outIdx[k] = rest % outShape[k];
      rest = Math.floor(rest / outShape[k]);
    }
    const srcIdx: number[] = [];
    perm.forEach((p, k) => {
      srcIdx[p] = outIdx[k];
    });
    out.push(src[srcIdx.reduce((at, i, k) => at * shape[k] + i, 0)]);
  }
  return out;
}

describe("permute", () => {
  const cases: [number[], number[]][] = [
    [
      [3, 5],
      [1, 0],
    ],
    [
      [40, 33],
      [1, 0],
    ],
    [
      [2, 3, 4],
      [2, 0, 1],
    ],
    [
      [2, 3, 4],
      [1, 0, 2],
    ],
    [
      [3, 2, 4, 5],
      [3, 2, 0, 1],
    ],
  ];
  for (const [shape, perm] of cases) {
    it(`[${shape}] by (${perm})`, () => {
      const n = shape.reduce((a, b) => a * b, 1);
      const src = Float32Array.from({ length: n }, (_, i) => i * 0.5);
      expect(Array.from(permute(src, shape, perm))).toEqual(byDefinition(src, shape, perm));
    });
  }

  it("keeps the element type, bigints included", () => {
    const src = BigInt64Array.from({ length: 24 }, (_, i) => BigInt(i) << 40n);
    const out = permute(src, [2, 3, 4], [2, 1, 0]);
    expect(out).toBeInstanceOf(BigInt64Array);
    expect(Array.from(out)).toEqual(byDefinition(src, [2, 3, 4], [2, 1, 0]));
  });
});
