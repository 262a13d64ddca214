import { describe, expect, it } from "vitest";
import {
  columns,
  frobenius,
  hstack,
  identity,
  mat,
  matmul,
  matmulABt,
  matmulAtB,
  norm2,
  scale,
  sub,
  transpose,
} from "../../coordinator/linalg/matrix.js";
import { at, diff, fro, make, mulberry32, naiveMul, naiveT, randomMat } from "./linalg-helpers.js";

describe("matrix", () => {
  it("mat wraps data, allocates zeros and checks shapes", () => {
    const d = new Float64Array([1, 2, 3, 4, 5, 6]);
    const a = mat(2, 3, d);
    expect(a.data).toBe(d);
    expect(at(a, 1, 0)).toBe(4);
    expect([...mat(2, 2).data]).toEqual([0, 0, 0, 0]);
    expect(() => mat(2, 2, d)).toThrow(RangeError);
    expect(() => mat(-1, 2)).toThrow(RangeError);
    expect(() => mat(1.5, 2)).toThrow(RangeError);
  });

  it("identity and transpose", () => {
    expect([...identity(3).data]).toEqual([1, 0, 0, 0, 1, 0, 0, 0, 1]);
    const rng = mulberry32(1);
    for (const [r, c] of [
      [1, 1],
      [3, 7],
      [40, 33],
      [70, 65],
    ]) {
      const a = randomMat(r, c, rng);
      expect(transpose(a)).toEqual(naiveT(a));
    }
  });

  it("matmul, matmulAtB and matmulABt agree with the triple loop on odd shapes", () => {
    const rng = mulberry32(2);
    for (const [m, k, n] of [
      [1, 1, 1],
      [2, 3, 4],
      [5, 1, 7],
      [17, 131, 9],
      [33, 260, 600],
      [0, 3, 2],
      [3, 0, 2],
    ]) {
      const a = randomMat(m, k, rng);
      const b = randomMat(k, n, rng);
      const ref = naiveMul(a, b);
      const tol = 1e-13 * (fro(ref) + 1);
      expect(diff(matmul(a, b), ref)).toBeLessThan(tol);
      expect(diff(matmulAtB(naiveT(a), b), ref)).toBeLessThan(tol);
      expect(diff(matmulABt(a, naiveT(b)), ref)).toBeLessThan(tol);
    }
    expect(() => matmul(mat(2, 3), mat(2, 3))).toThrow(RangeError);
    expect(() => matmulAtB(mat(2, 3), mat(3, 3))).toThrow(RangeError);
    expect(() => matmulABt(mat(2, 3), mat(2, 2))).toThrow(RangeError);
  });

  it("matmul skips zero entries of a without changing results", () => {
    const a = make(5, 9, (i, j) => ((i + j) % 3 === 0 ? 0 : i - j));
    const b = make(9, 4, (i, j) => i * 0.5 + j);
    expect(diff(matmul(a, b), naiveMul(a, b))).toBe(0);
  });

  it("matmulABt(x, x) is exactly symmetric", () => {
    const x = randomMat(37, 11, mulberry32(3));
    const g = matmulABt(x, x);
    expect(diff(g, naiveMul(x, naiveT(x)))).toBeLessThan(1e-12);
    for (let i = 0; i < 37; i++) for (let j = 0; j < i; j++) expect(at(g, i, j)).toBe(at(g, j, i));
  });

  it("columns, hstack, sub, scale", () => {
    const a = make(3, 4, (i, j) => 10 * i + j);
    expect(columns(a, 1, 3)).toEqual(make(3, 2, (i, j) => 10 * i + j + 1));
    expect(columns(a, 2, 2).cols).toBe(0);
    expect(() => columns(a, 3, 5)).toThrow(RangeError);
    const b = make(3, 2, (i, j) => -i - j);
    expect(hstack(a, b)).toEqual(make(3, 6, (i, j) => (j < 4 ? at(a, i, j) : at(b, i, j - 4))));
    expect(() => hstack(a, mat(2, 2))).toThrow(RangeError);
    expect(sub(a, a)).toEqual(mat(3, 4));
    expect(() => sub(a, b)).toThrow(RangeError);
    expect(scale(a, -2)).toEqual(make(3, 4, (i, j) => -2 * at(a, i, j)));
  });

  it("frobenius neither overflows nor underflows", () => {
    expect(frobenius(mat(1, 2, new Float64Array([3, 4])))).toBe(5);
    expect(frobenius(mat(1, 2, new Float64Array([3e300, 4e300])))).toBeCloseTo(5e300, -286);
    expect(frobenius(mat(1, 2, new Float64Array([3e-300, 4e-300]))) / 5e-300).toBeCloseTo(1, 14);
    expect(frobenius(mat(0, 0))).toBe(0);
    expect(norm2(new Float64Array([1, 3, 4, 1]), 1, 3)).toBe(5);
  });
});
