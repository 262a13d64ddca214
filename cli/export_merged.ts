/**
 * `inflora export`: one plain timm VisionTransformer checkpoint from a run. Every adapter s ≤ t is folded
 * into its block's `attn.qkv.weight` (k rows D..2D gain Σ A_k B_k, v rows 2D..3D gain Σ A_v B_v, summed in
 * float64 and cast once) and the heads 0..t are stacked into one `head`, so
 *
 *   timm.models.vision_transformer.VisionTransformer(img_size, patch_size, embed_dim, depth, num_heads,
 *       mlp_ratio, num_classes = classes seen, global_pool = "token")
 *
 * loads the file with `strict=True` and predicts what the run predicted (outputs in the run's label order).
 */
import { type AdapterSet, concatHeads, foldAdapters } from "../common/adapters.js";
import { type StTensor, writeSafetensors } from "../common/safetensors.js";
import { expectedShapes, type VitConfig } from "../common/vit_config.js";
import { readCheckpoint } from "../coordinator/checkpoint.js";
import { loadWeights, WeightsError } from "../worker/model/load_weights.js";
import { checkpointFile, readRunInfo, resolveTask } from "./evaluate_run.js";

export const MERGED_FORMAT = "inflora-merged/1";

export interface ExportOptions {
  readonly run: string;
  readonly task?: number;
  readonly out: string;
}

export interface ExportSummary {
  readonly task: number;
  readonly classes: number;
  readonly tensors: number;
  readonly parameters: number;
  readonly timm: string;
}

/**
 * W_qkv [3D, D] with Σ_s A_s B_s added to its k rows (D..2D) and v rows (2D..3D) by the host fold (float64,
 * rounded once); the q rows are copied.
 */
export function foldQkv(
  qkv: Float32Array,
  D: number,
  sets: readonly AdapterSet[],
  block: number,
): Float32Array {
  const out = Float32Array.from(qkv);
  for (const [which, first] of [
    ["k", D * D],
    ["v", 2 * D * D],
  ] as const) {
    out.set(foldAdapters(qkv.subarray(first, first + D * D), D, sets, block, which), first);
  }
  return out;
}

export function timmConstructor(m: Omit<VitConfig, "inChans">, classes: number): string {
  return (
    `VisionTransformer(img_size=${m.imgSize}, patch_size=${m.patchSize}, embed_dim=${m.embedDim}, ` +
    `depth=${m.depth}, num_heads=${m.numHeads}, mlp_ratio=${m.mlpHidden / m.embedDim}, ` +
    `num_classes=${classes}, global_pool='token')`
  );
}

export async function exportMerged(opts: ExportOptions): Promise<ExportSummary> {
  const run = readRunInfo(opts.run);
  const task = resolveTask(opts.run, opts.task);
  const m = run.model;
  const D = m.embedDim;
  const ck = await readCheckpoint(checkpointFile(opts.run, task), { depth: m.depth, D });
  const base = await loadWeights(run.config.weights, {
    imgSize: m.imgSize,
    patchSize: m.patchSize,
    depth: m.depth,
    embedDim: D,
    numHeads: m.numHeads,
  });
  if (base.fingerprint !== run.weightsSha256) {
    throw new WeightsError(
      `${run.config.weights}: not the base weights the run used (sha256 ${base.fingerprint}, run.json records ${run.weightsSha256})`,
    );
  }
  const tensors = new Map<string, StTensor>();
  // Only the tensors timm's model has: the loader already dropped the pretrained head and pre_logits.
  for (const [name, shape] of expectedShapes(base.cfg)) {
    const t = base.tensors.get(name)!;
    tensors.set(name, { dtype: "F32", shape, data: t.data });
  }
  const adapters = ck.adapters.slice(0, task + 1);
  for (let i = 0; i < m.depth; i++) {
    const name = `blocks.${i}.attn.qkv.weight`;
    tensors.set(name, {
      dtype: "F32",
      shape: [3 * D, D],
      data: foldQkv(base.tensors.get(name)!.data, D, adapters, i),
    });
  }
  const { classes, weight, bias } = concatHeads(ck.heads.slice(0, task + 1), D);
  tensors.set("head.weight", { dtype: "F32", shape: [classes, D], data: weight });
  tensors.set("head.bias", { dtype: "F32", shape: [classes], data: bias });
  const timm = timmConstructor(m, classes);
  await writeSafetensors(opts.out, tensors, {
    format: MERGED_FORMAT,
    task: String(task),
    num_classes: String(classes),
    img_size: String(m.imgSize),
    patch_size: String(m.patchSize),
    in_chans: String(m.inChans),
    embed_dim: String(D),
    depth: String(m.depth),
    num_heads: String(m.numHeads),
    mlp_ratio: String(m.mlpHidden / D),
    global_pool: "token",
    timm_model: timm,
    class_order: JSON.stringify(run.classOrder),
    class_names: JSON.stringify(run.classNames.slice(0, classes)),
    // What the model expects: the run's own input transform (the official configs use none).
    input: run.config.normalize_mean
      ? `pixels in [0, 1], then (x - mean) / std with mean ${JSON.stringify(run.config.normalize_mean)}, std ${JSON.stringify(run.config.normalize_std)}`
      : "RGB pixels scaled to [0, 1], no mean/std normalisation",
    base_weights_sha256: run.weightsSha256,
    run_id: run.runId,
  });
  let parameters = 0;
  for (const t of tensors.values()) parameters += t.data.length;
  return { task, classes, tensors: tensors.size, parameters, timm };
}
