/**
 * The central linear algebra against the reference: fed the reference's own float64 covariances, the
 * design of B and the DualGPM update reproduce its subspaces, widths and types task after task; and the
 * designed B is interference-free with respect to the stored basis.
 */
import path from "node:path";
import { describe, expect, it } from "vitest";
import { readSafetensors } from "../../common/safetensors.js";
import { designB } from "../../coordinator/inflora/design.js";
import {
  complement,
  type LayerMemory,
  threshold,
  updateDualGpm,
  updateLayer,
} from "../../coordinator/inflora/dualgpm.js";
import { eighDescending } from "../../coordinator/linalg/eigh.js";
import { type Mat, mat, matmul, matmulABt, matmulAtB, sub } from "../../coordinator/linalg/matrix.js";
import { EXPECTED_DIR, frob } from "../helpers/reference_compare.js";
import { mulberry32 } from "../helpers/tiny_vit.js";

const D = 48;
const depth = 3;
const rank = 4;

function spectral(a: Mat): number {
  const { values } = eighDescending(a);
  return Math.max(Math.abs(values[0]), Math.abs(values[values.length - 1]));
}

function projectorOfRows(b: Float64Array | Float32Array, r: number): Mat {
  // Rows of B/√3 are orthonormal/√3: P = 3 Bᵀ B.
  const bm = mat(r, D, Float64Array.from(b));
  const p = matmulAtB(bm, bm);
  for (let i = 0; i < p.data.length; i++) p.data[i] *= 3;
  return p;
}

async function expectedCheckpoint(t: number) {
  return readSafetensors(path.join(EXPECTED_DIR, "checkpoints", `task-0${t}.safetensors`));
}

describe("DualGPM and the design of B on the reference covariances", () => {
  it("reproduces every task's bases, widths, types and designed B", async () => {
    let memory: (LayerMemory | undefined)[] = new Array(depth).fill(undefined);
    for (let t = 0; t < 5; t++) {
      const cov = await readSafetensors(path.join(EXPECTED_DIR, "covariances", `task-0${t}.safetensors`));
      const c = (kind: "pre" | "post", i: number) => {
        const x = cov.tensors.get(`${kind}.${i}`)!;
        return mat(D, D, Float64Array.from(x.data as Float64Array));
      };
      const ck = await expectedCheckpoint(t);
      for (let i = 0; i < depth; i++) {
        const B = designB(c("pre", i), rank, t === 0 ? undefined : memory[i]);
        const Bexp = ck.tensors.get(`blocks.${i}.attn.inflora.B_k.${t}`)!.data as Float32Array;
        const dist = spectral(sub(projectorOfRows(B, rank), projectorOfRows(Bexp, rank)));
        expect(dist, `task ${t} block ${i}: Bdist`).toBeLessThan(1e-4);
      }
      memory = updateDualGpm(
        memory,
        Array.from({ length: depth }, (_, i) => c("post", i)),
        { threshold: threshold(0.95, 1.0, t, 5), gpmOnly: false },
      );
      const types = JSON.parse(ck.metadata.dualgpm_types);
      for (let i = 0; i < depth; i++) {
        const U = ck.tensors.get(`dualgpm.${i}.basis`)!;
        expect(memory[i]!.type, `task ${t} layer ${i}: type`).toBe(types[i]);
        expect(memory[i]!.basis.cols, `task ${t} layer ${i}: width`).toBe(U.shape[1]);
        const Um = mat(D, U.shape[1], U.data as Float64Array);
        const gpmDist = spectral(sub(matmulABt(memory[i]!.basis, memory[i]!.basis), matmulABt(Um, Um)));
        expect(gpmDist, `task ${t} layer ${i}: GPMdist`).toBeLessThan(1e-6);
      }
    }
  });
});

/** A random covariance with a decaying spectrum, rank-deficient when `zeros` > 0. */
function randomCovariance(n: number, seed: number, zeros = 0): Mat {
  const rnd = mulberry32(seed);
  const x = mat(n, n - zeros);
  for (let i = 0; i < x.data.length; i++) x.data[i] = (rnd() * 2 - 1) * Math.exp(-(i % (n - zeros)) / 6);
  return matmulABt(x, x);
}

function orthonormalColumns(n: number, k: number, seed: number): Mat {
  const { vectors } = eighDescending(randomCovariance(n, seed));
  const out = mat(n, k);
  for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) out.data[i * k + j] = vectors.data[i * n + j];
  return out;
}

describe("interference-freeness", () => {
  const n = 24;
  it("a remove layer's new B is orthogonal to the stored basis", () => {
    const U = orthonormalColumns(n, 7, 3);
    const B = mat(3, n, designB(randomCovariance(n, 4), 3, { basis: U, type: "remove" }));
    const BU = matmul(B, U);
    expect(frob(BU)).toBeLessThan(1e-12);
  });

  it("a retain layer's new B lies inside the stored basis", () => {
    const U = orthonormalColumns(n, 9, 5);
    const B = mat(3, n, designB(randomCovariance(n, 6), 3, { basis: U, type: "retain" }));
    const outside = sub(B, matmulABt(matmul(B, U), U));
    expect(frob(outside)).toBeLessThan(1e-12);
    expect(frob(B)).toBeCloseTo(1, 10); // 3 orthonormal rows / √3
  });

  it("the complement of a basis is orthonormal and orthogonal to it", () => {
    const U = orthonormalColumns(n, 15, 7);
    const Q = complement(U);
    expect(Q.cols).toBe(n - 15);
    expect(frob(matmulAtB(U, Q))).toBeLessThan(1e-12);
    const QtQ = matmulAtB(Q, Q);
    for (let i = 0; i < Q.cols; i++) QtQ.data[i * Q.cols + i] -= 1;
    expect(frob(QtQ)).toBeLessThan(1e-12);
  });

  it("a first task whose energy needs more than D/2 directions stores the complement as retain (the documented fix)", () => {
    // Flat spectrum: reaching 95 % of the energy needs nearly every direction, so r ≥ D/2.
    const c = mat(n, n);
    for (let i = 0; i < n; i++) c.data[i * n + i] = 1 + i * 1e-3;
    const m = updateLayer(undefined, c, { threshold: 0.95, gpmOnly: false });
    expect(m.type).toBe("retain");
    // r = 22 directions carry < 95 % of the energy: the retained subspace is the 2 weakest ones.
    expect(m.basis.cols).toBe(2);
    for (let j = 0; j < m.basis.cols; j++) {
      let energy = 0;
      for (let i = 0; i < 22; i++) energy += m.basis.data[(n - 1 - i) * m.basis.cols + j] ** 2;
      expect(energy, "retained directions avoid the strongest ones").toBeLessThan(1e-20);
    }
  });

  it("the GPM variant never switches to retain", () => {
    const c = mat(n, n);
    for (let i = 0; i < n; i++) c.data[i * n + i] = 1;
    const m = updateLayer(undefined, c, { threshold: 0.95, gpmOnly: true });
    expect(m.type).toBe("remove");
    const grown = updateDualGpm([m], [randomCovariance(n, 9)], { threshold: 0.99, gpmOnly: true });
    expect(grown[0].type).toBe("remove");
  });
});
