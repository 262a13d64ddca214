/**
 * The model's hand-written passes against a plain formulation of the same ViT (the textbook ops, batched
 * 4-D attention, tfjs autodiff), on the cpu backend, under every compute policy — including the wasm
 * layout (one image per pass, explicit transposes, Elu-based exp), so both paths are checked here.
 */
import * as tf from "@tensorflow/tfjs-core";
import { beforeAll, describe, expect, it } from "vitest";
import type { AdapterSet } from "../../common/adapters.js";
import { numTokens, type VitConfig } from "../../common/vit_config.js";
import { selectBackend } from "../../worker/backend.js";
import { imagesToPatches } from "../../worker/model/layers.js";
import { headLogits, lossAndGrads, type Trainables } from "../../worker/model/objective.js";
import type { ComputePolicy } from "../../worker/model/policy.js";
import { type HostWeights, InfLoraVit } from "../../worker/model/vit.js";
import { relErr } from "../helpers/rel_err.js";
import { randomArray, randomWeights } from "../helpers/tiny_vit.js";

// Three heads, several blocks and images: every per-head, per-image and class-token-only path runs.
const cfg: VitConfig = {
  imgSize: 8,
  patchSize: 4,
  inChans: 3,
  embedDim: 12,
  depth: 3,
  numHeads: 3,
  mlpHidden: 24,
};
const D = cfg.embedDim;
const N = numTokens(cfg);
const r = 2;
const classes = 5;
const count = 4;

const POLICIES: ComputePolicy[] = [
  {
    perImage: false,
    explicitTransposes: false,
    fastGelu: false,
    maxTrainImagesPerPass: Infinity,
    syncReadback: true,
    jointHeads: false,
  },
  {
    perImage: true,
    explicitTransposes: true,
    fastGelu: true,
    maxTrainImagesPerPass: Infinity,
    syncReadback: true,
    jointHeads: false,
  },
  {
    perImage: true,
    explicitTransposes: false,
    fastGelu: false,
    maxTrainImagesPerPass: Infinity,
    syncReadback: true,
    jointHeads: false,
  },
  {
    perImage: false,
    explicitTransposes: true,
    fastGelu: true,
    maxTrainImagesPerPass: Infinity,
    syncReadback: true,
    jointHeads: false,
  },
  // Passes of 3 images for a micro-shard of 4: a pass of 3, then one of 1.
  {
    perImage: false,
    explicitTransposes: false,
    fastGelu: false,
    maxTrainImagesPerPass: 3,
    syncReadback: true,
    jointHeads: false,
  },
  // The joint attention layout (every head per matmul), batched, per image, and in passes of 3.
  {
    perImage: false,
    explicitTransposes: false,
    fastGelu: false,
    maxTrainImagesPerPass: Infinity,
    syncReadback: true,
    jointHeads: true,
  },
  {
    perImage: true,
    explicitTransposes: false,
    fastGelu: false,
    maxTrainImagesPerPass: Infinity,
    syncReadback: true,
    jointHeads: true,
  },
  {
    perImage: false,
    explicitTransposes: false,
    fastGelu: false,
    maxTrainImagesPerPass: 3,
    syncReadback: true,
    jointHeads: true,
  },
];
const label = (p: ComputePolicy) =>
  `jointHeads=${p.jointHeads} perImage=${p.perImage} explicitTransposes=${p.explicitTransposes} fastGelu=${p.fastGelu} passes≤${p.maxTrainImagesPerPass}`;

interface Case {
  weights: HostWeights;
  finished: AdapterSet;
  patches: Float32Array;
  targets: Int32Array;
  B: Float32Array[];
  Ak: Float32Array[];
  Av: Float32Array[];
  headW: Float32Array;
  headB: Float32Array;
}

function makeCase(): Case {
  const perBlock = (seed: number, scale: number) =>
    Array.from({ length: cfg.depth }, (_, i) => randomArray(D * r, seed + i, scale));
  const images = randomArray(count * 3 * cfg.imgSize ** 2, 7, 0.5).map((v) => v + 0.5);
  return {
    weights: randomWeights(cfg, 3, 0.4),
    finished: {
      rank: r,
      Bk: perBlock(10, 0.4),
      Bv: perBlock(20, 0.4),
      Ak: perBlock(30, 0.3),
      Av: perBlock(40, 0.3),
    },
    patches: imagesToPatches(images, count, 3, cfg.imgSize, cfg.patchSize),
    targets: Int32Array.from([1, 4, 0, 1]),
    B: perBlock(50, 0.5),
    Ak: perBlock(60, 0.4),
    Av: perBlock(70, 0.4),
    headW: randomArray(classes * D, 80, 0.6),
    headB: randomArray(classes, 81, 0.2),
  };
}

/** The ViT as plain tfjs ops over fused qkv weights, with the adapters applied unfolded. */
function plainLogits(
  c: Case,
  x: tf.Tensor2D,
  batch: number,
  Ak: tf.Tensor2D[],
  Av: tf.Tensor2D[],
  W: tf.Tensor,
  b: tf.Tensor,
): tf.Tensor2D {
  const w = (name: string) => tf.tensor(c.weights.get(name)!.data, [...c.weights.get(name)!.shape]);
  const H = cfg.numHeads;
  const dh = D / H;
  const P = N - 1;
  const linear = (t: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor) =>
    tf.add(tf.matMul(t, tf.reshape(weight, [weight.shape[0], -1]), false, true), bias);
  const ln = (t: tf.Tensor, g: tf.Tensor, beta: tf.Tensor) => {
    const centered = tf.sub(t, tf.mean(t, -1, true));
    const variance = tf.mean(tf.square(centered), -1, true);
    return tf.add(tf.mul(tf.div(centered, tf.sqrt(tf.add(variance, 1e-6))), g), beta);
  };
  const gelu = (t: tf.Tensor) => tf.mul(tf.mul(t, 0.5), tf.add(tf.erf(tf.mul(t, Math.SQRT1_2)), 1));
  const emb = tf.reshape(linear(x, w("patch_embed.proj.weight"), w("patch_embed.proj.bias")), [batch, P, D]);
  let h: tf.Tensor = tf.add(tf.concat([tf.tile(w("cls_token"), [batch, 1, 1]), emb], 1), w("pos_embed"));
  h = tf.reshape(h, [batch * N, D]);
  for (let i = 0; i < cfg.depth; i++) {
    const p = `blocks.${i}.`;
    const xh = ln(h, w(`${p}norm1.weight`), w(`${p}norm1.bias`));
    const qkvW = w(`${p}attn.qkv.weight`);
    const qkvB = w(`${p}attn.qkv.bias`);
    const part = (j: number, t: tf.Tensor) => tf.slice(t, [j * D], [D]);
    const wq = tf.slice(qkvW, [0, 0], [D, D]);
    let wk = tf.slice(qkvW, [D, 0], [D, D]);
    let wv = tf.slice(qkvW, [2 * D, 0], [D, D]);
    const fold = (base: tf.Tensor, A: Float32Array, Bm: Float32Array) =>
      tf.add(base, tf.matMul(tf.tensor2d(A, [D, r]), tf.tensor2d(Bm, [r, D])));
    wk = fold(wk, c.finished.Ak[i], c.finished.Bk[i]);
    wv = fold(wv, c.finished.Av[i], c.finished.Bv[i]);
    const z = tf.matMul(xh, tf.tensor2d(c.B[i], [r, D]), false, true);
    const q = tf.mul(linear(xh, wq, part(0, qkvB)), dh ** -0.5);
    const k = tf.add(linear(xh, wk, part(1, qkvB)), tf.matMul(z, Ak[i], false, true));
    const v = tf.add(linear(xh, wv, part(2, qkvB)), tf.matMul(z, Av[i], false, true));
    const heads = (t: tf.Tensor) => tf.transpose(tf.reshape(t, [batch, N, H, dh]), [0, 2, 1, 3]);
    const att = tf.matMul(tf.softmax(tf.matMul(heads(q), heads(k), false, true)), heads(v));
    const o = tf.reshape(tf.transpose(att, [0, 2, 1, 3]), [batch * N, D]);
    h = tf.add(h, linear(o, w(`${p}attn.proj.weight`), w(`${p}attn.proj.bias`)));
    const m = ln(h, w(`${p}norm2.weight`), w(`${p}norm2.bias`));
    const f = gelu(linear(m, w(`${p}mlp.fc1.weight`), w(`${p}mlp.fc1.bias`)));
    h = tf.add(h, linear(f, w(`${p}mlp.fc2.weight`), w(`${p}mlp.fc2.bias`)));
  }
  const cls = tf.reshape(tf.slice(tf.reshape(h, [batch, N, D]), [0, 0, 0], [batch, 1, D]), [batch, D]);
  return linear(ln(cls, w("norm.weight"), w("norm.bias")), W, b) as tf.Tensor2D;
}

describe("hand-written model passes", () => {
  beforeAll(async () => {
    await selectBackend("cpu");
  });

  const c = makeCase();
  const rowLen = 3 * cfg.patchSize ** 2;
  const patchRows = () => tf.tensor2d(c.patches, [count * (N - 1), rowLen]);
  const aT = (a: Float32Array) => tf.tidy(() => tf.transpose(tf.tensor2d(a, [D, r])) as tf.Tensor2D);

  const plain = tf.tidy(() => {
    const Ak = c.Ak.map((a) => tf.tensor2d(a, [D, r]));
    const Av = c.Av.map((a) => tf.tensor2d(a, [D, r]));
    const W = tf.tensor2d(c.headW, [classes, D]);
    const b = tf.tensor1d(c.headB);
    const onehot = tf.oneHot(tf.tensor1d(c.targets, "int32"), classes).toFloat();
    const loss = () => {
      const logits = plainLogits(c, patchRows(), count, Ak, Av, W, b);
      return tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits), onehot))) as tf.Scalar;
    };
    const { value, grads } = tf.valueAndGrads(loss)([...Ak, ...Av, W, b]);
    const logits = plainLogits(c, patchRows(), count, Ak, Av, W, b);
    return { value, grads, logits };
  });
  const plainOut = {
    loss: plain.value.dataSync()[0],
    logits: plain.logits.dataSync(),
    grads: plain.grads.map((g) => g.dataSync()),
  };

  for (const policy of POLICIES) {
    it(`match the plain formulation and its autodiff (${label(policy)})`, async () => {
      const model = new InfLoraVit(cfg, c.weights, { policy });
      await model.setFinishedAdapters([c.finished]);
      const BT = c.B.map((b) => tf.tidy(() => tf.transpose(tf.tensor2d(b, [r, D])) as tf.Tensor2D));
      const p: Trainables = {
        AkT: c.Ak.map(aT),
        AvT: c.Av.map(aT),
        headW: tf.tensor2d(c.headW, [classes, D]),
        headB: tf.tensor1d(c.headB),
      };
      const before = tf.memory().numTensors;
      const logits = tf.tidy(() => headLogits(model, patchRows(), count, BT, p));
      expect(relErr(logits.dataSync(), plainOut.logits), "logits").toBeLessThan(2e-6);
      logits.dispose();
      const out = await lossAndGrads(model, c.patches, count, c.targets, BT, p);
      expect(Math.abs(out.lossSum - plainOut.loss) / plainOut.loss, "loss").toBeLessThan(2e-6);
      for (let i = 0; i < cfg.depth; i++) {
        expect(relErr(out.gradAk[i], plainOut.grads[i]), `A_k block ${i}`).toBeLessThan(1e-5);
        expect(relErr(out.gradAv[i], plainOut.grads[cfg.depth + i]), `A_v block ${i}`).toBeLessThan(1e-5);
      }
      expect(relErr(out.gradHeadW, plainOut.grads[2 * cfg.depth]), "head weight").toBeLessThan(1e-5);
      expect(relErr(out.gradHeadB, plainOut.grads[2 * cfg.depth + 1]), "head bias").toBeLessThan(1e-5);
      // The live fold is cached across calls with the same adapter tensors: nothing else stays behind.
      await lossAndGrads(model, c.patches, count, c.targets, BT, p);
      // Per block: B, and W_k, W_vᵀ, W_v per head (joint: W_k and W_v).
      const folded = policy.jointHeads ? 2 : 3 * cfg.numHeads;
      expect(tf.memory().numTensors).toBe(before + cfg.depth * (1 + folded));
      tf.dispose([...BT, ...p.AkT, ...p.AvT, p.headW, p.headB]);
      model.dispose();
    });
  }

  it("collects every block's attention input and the same features under every policy", async () => {
    const results = [];
    for (const policy of POLICIES) {
      const model = new InfLoraVit(cfg, c.weights, { policy });
      await model.setFinishedAdapters([c.finished]);
      const cov: Float32Array[] = [];
      const feats = tf.tidy(() =>
        model.features(patchRows(), count, {
          collect: (i, h) => {
            expect(h.shape).toEqual([count * N, D]);
            cov[i] = tf.matMul(h, h, true, false).dataSync() as Float32Array;
          },
        }),
      );
      const out = { feats: feats.dataSync(), cov };
      feats.dispose();
      model.dispose();
      results.push(out);
    }
    for (const r of results.slice(1)) {
      expect(relErr(r.feats, results[0].feats)).toBeLessThan(2e-6);
      for (let i = 0; i < cfg.depth; i++) expect(relErr(r.cov[i], results[0].cov[i])).toBeLessThan(2e-6);
    }
  });

  it("refolds finished adapters from the base weights, not on top of an earlier fold", async () => {
    const fresh = new InfLoraVit(cfg, c.weights);
    const refolded = new InfLoraVit(cfg, c.weights);
    await refolded.setFinishedAdapters([c.finished]);
    await refolded.setFinishedAdapters([]);
    const [a, b] = [fresh, refolded].map((m) => {
      const f = tf.tidy(() => m.features(patchRows(), count));
      const d = f.dataSync();
      f.dispose();
      m.dispose();
      return d;
    });
    expect(Array.from(b)).toEqual(Array.from(a));
  });
});
