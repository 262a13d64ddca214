/** Folding adapters into qkv: k rows gain Σ A_k B_k, v rows Σ A_v B_v, q rows are untouched. */
import { describe, expect, it } from "vitest";
import { foldQkv, timmConstructor } from "../../cli/export_merged.js";
import { exactProduct, randomAdapterSet } from "../helpers/adapters.js";
import { randomArray } from "../helpers/tiny_vit.js";

const D = 6;

describe("foldQkv", () => {
  const qkv = randomArray(3 * D * D, 7);
  const adapters = [randomAdapterSet(D, 2, 100), randomAdapterSet(D, 3, 200)];

  for (const block of [0, 1]) {
    it(`block ${block}: q unchanged, k and v gain their products`, () => {
      const merged = foldQkv(qkv, D, adapters, block);
      expect(merged.slice(0, D * D)).toEqual(qkv.slice(0, D * D));
      for (const [which, offset] of [
        ["k", D * D],
        ["v", 2 * D * D],
      ] as const) {
        const p = exactProduct(adapters, D, block, which);
        for (let n = 0; n < D * D; n++) {
          // Summed in float64 and cast once: within one float32 rounding of the exact value.
          const exact = qkv[offset + n] + p[n];
          expect(Math.abs(merged[offset + n] - exact)).toBeLessThanOrEqual(
            Math.abs(exact) * 2 ** -24 + 1e-12,
          );
        }
      }
    });
  }

  it("no adapters: a copy of the base", () => {
    expect(foldQkv(qkv, D, [], 0)).toEqual(qkv);
  });

  it("names the timm constructor with the classes seen", () => {
    const m = { imgSize: 224, patchSize: 16, embedDim: 768, depth: 12, numHeads: 12, mlpHidden: 3072 };
    expect(timmConstructor(m, 100)).toBe(
      "VisionTransformer(img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4, num_classes=100, global_pool='token')",
    );
  });
});
