/**
 * The one table of Google ViT `.npz` conversions (JAX/Flax names and layouts, e.g. the ViT-B_16 in21k
 * augreg files) → timm `VisionTransformer` state-dict names and layouts, as timm's `_load_weights` converts
 * them; PyTorch `.pth` layouts have their table beside it, in pth_to_timm.ts. Conversions are pure reshapes/transposes, so float32 inputs come out
 * bit-identical.
 *
 * Shapes are checked symbolically: a letter binds to the first size seen for it, and every later use must
 * agree, so a wrong shape is reported against the size the rest of the checkpoint implies.
 */
import { permute, transpose2d } from "../../common/permute.js";
import type { TypedData } from "../../common/safetensors.js";

export interface JaxArray {
  readonly shape: readonly number[];
  readonly data: TypedData;
}

export interface TimmTensor {
  shape: number[];
  data: Float32Array;
}

export class CheckpointConversionError extends Error {
  override readonly name = "CheckpointConversionError";
}

/**
 * Shape letters: D embed width, P×Q patch size, C input channels, T tokens, H heads, K head width,
 * M MLP hidden width, R pre-logits width (= D when the checkpoint has no pre_logits), N classes.
 */
const SYMBOLS =
  "D embed width, P×Q patch, C channels, T tokens, H heads, K head width, M MLP width, " +
  "R pre-logits width (D without pre_logits), N classes";

type Convert = (inputs: Float32Array[], shapes: number[][]) => TimmTensor;

interface Conversion {
  /** Google names (after the optional `opt/target/` prefix); `{i}` is the encoder block index. */
  readonly jax: readonly string[];
  /** Expected shape of each input: size letters (see SYMBOLS) or literal sizes. */
  readonly shapes: readonly (readonly string[])[];
  readonly timm: string;
  readonly how: string;
  readonly convert: Convert;
}

const BLK = "Transformer/encoderblock_{i}";
const ATT = `${BLK}/MultiHeadDotProductAttention_1`;
const MLP = `${BLK}/MlpBlock_3`;
const QKV = ["query", "key", "value"];
const T = permuteTo([1, 0]);

// biome-ignore format: one conversion per line keeps the whole mapping on one screen
const TABLE: readonly Conversion[] = [
  row("embedding/kernel", ["P", "Q", "C", "D"], "patch_embed.proj.weight", "HWIO→OIHW transpose(3,2,0,1)", permuteTo([3, 2, 0, 1])),
  row("embedding/bias", ["D"], "patch_embed.proj.bias"),
  row("cls", ["1", "1", "D"], "cls_token"),
  row("Transformer/posembed_input/pos_embedding", ["1", "T", "D"], "pos_embed"),
  row(`${BLK}/LayerNorm_0/scale`, ["D"], "blocks.{i}.norm1.weight"),
  row(`${BLK}/LayerNorm_0/bias`, ["D"], "blocks.{i}.norm1.bias"),
  group(QKV.map((p) => `${ATT}/${p}/kernel`), ["D", "H", "K"], "blocks.{i}.attn.qkv.weight", "each reshape(D, H·K).T, stacked rows q, k, v → [3·H·K, D]", qkvWeight),
  group(QKV.map((p) => `${ATT}/${p}/bias`), ["H", "K"], "blocks.{i}.attn.qkv.bias", "each flattened, concatenated q, k, v → [3·H·K]", qkvBias),
  row(`${ATT}/out/kernel`, ["H", "K", "D"], "blocks.{i}.attn.proj.weight", "transpose(2,0,1).reshape(D, H·K)", projWeight),
  row(`${ATT}/out/bias`, ["D"], "blocks.{i}.attn.proj.bias"),
  row(`${BLK}/LayerNorm_2/scale`, ["D"], "blocks.{i}.norm2.weight"),
  row(`${BLK}/LayerNorm_2/bias`, ["D"], "blocks.{i}.norm2.bias"),
  row(`${MLP}/Dense_0/kernel`, ["D", "M"], "blocks.{i}.mlp.fc1.weight", "transposed", T),
  row(`${MLP}/Dense_0/bias`, ["M"], "blocks.{i}.mlp.fc1.bias"),
  row(`${MLP}/Dense_1/kernel`, ["M", "D"], "blocks.{i}.mlp.fc2.weight", "transposed", T),
  row(`${MLP}/Dense_1/bias`, ["D"], "blocks.{i}.mlp.fc2.bias"),
  row("Transformer/encoder_norm/scale", ["D"], "norm.weight"),
  row("Transformer/encoder_norm/bias", ["D"], "norm.bias"),
  row("pre_logits/kernel", ["D", "R"], "pre_logits.fc.weight", "transposed", T),
  row("pre_logits/bias", ["R"], "pre_logits.fc.bias"),
  row("head/kernel", ["R", "N"], "head.weight", "transposed", T),
  row("head/bias", ["N"], "head.bias"),
];

const PREFIX = "opt/target/";

/**
 * Converts Google ViT `.npz` arrays to timm names and layouts (float32). The optional `opt/target/`
 * prefix (checkpoints saved with optimizer state) is stripped. Names the table does not know are kept
 * under their original name, converted to float32, for the model loader to ignore or report. A known
 * name with the wrong rank or shape, or an incomplete q/k/v group, is an error naming the entry.
 */
export function jaxToTimm(arrays: ReadonlyMap<string, JaxArray>, source: string): Map<string, TimmTensor> {
  const byName = new Map<string, JaxArray>();
  const original = new Map<string, string>();
  for (const [name, arr] of arrays) {
    const key = name.startsWith(PREFIX) ? name.slice(PREFIX.length) : name;
    if (byName.has(key)) {
      throw new CheckpointConversionError(
        `${source}: entries "${original.get(key)}" and "${name}" both name "${key}"`,
      );
    }
    byName.set(key, arr);
    original.set(key, name);
  }

  const blocks = [
    ...new Set(
      [...byName.keys()].flatMap((n) => {
        const m = /^Transformer\/encoderblock_(\d+)\//.exec(n);
        return m === null ? [] : [Number(m[1])];
      }),
    ),
  ].sort((a, b) => a - b);

  const bound = new Map<string, { size: number; from: string }>();
  // Without pre_logits the head reads the encoder output directly, so its input width is D.
  const alias = byName.has("pre_logits/kernel") ? new Map<string, string>() : new Map([["R", "D"]]);
  const out = new Map<string, TimmTensor>();
  const used = new Set<string>();

  for (const conv of expand(blocks)) {
    const present = conv.jax.filter((n) => byName.has(n));
    if (present.length === 0) continue;
    if (present.length < conv.jax.length) {
      const missing = conv.jax.filter((n) => !byName.has(n));
      throw new CheckpointConversionError(
        `${source}: "${conv.timm}" needs ${conv.jax.map(q).join(", ")}, but ${missing.map(q).join(", ")} ` +
          `${missing.length === 1 ? "is" : "are"} missing`,
      );
    }
    const inputs: Float32Array[] = [];
    const shapes: number[][] = [];
    conv.jax.forEach((name, j) => {
      const arr = byName.get(name)!;
      const entry = original.get(name)!;
      checkShape(entry, arr.shape, conv.shapes[j], conv.timm, bound, alias, source);
      if (!(arr.data instanceof Float32Array || arr.data instanceof Float64Array)) {
        throw new CheckpointConversionError(
          `${source}: entry "${entry}" holds ${arr.data.constructor.name} data; a float array is expected`,
        );
      }
      inputs.push(toF32(arr.data));
      shapes.push([...arr.shape]);
      used.add(name);
    });
    out.set(conv.timm, conv.convert(inputs, shapes));
  }

  for (const [name, arr] of byName) {
    if (!used.has(name)) out.set(original.get(name)!, { shape: [...arr.shape], data: toF32(arr.data) });
  }
  return out;
}

/** The table as text, one line per conversion, for docs and `inspect`. */
export function describeConversions(): string[] {
  return [
    `Google ViT .npz → timm (optional "${PREFIX}" prefix stripped; {i} = block index; ${SYMBOLS}):`,
    ...TABLE.map(
      (c) => `${groupNames(c.jax)} [${c.shapes[0].join(",")}] → ${c.timm}${c.how === "" ? "" : `: ${c.how}`}`,
    ),
    "other names: kept unchanged",
  ];
}

// ---------------------------------------------------------------------------------------------------------

/** ["a/query/k", "a/key/k"] → "a/{query,key}/k": names of a group differ in one path segment. */
function groupNames(names: readonly string[]): string {
  if (names.length === 1) return names[0];
  const split = names.map((n) => n.split("/"));
  const at = split[0].findIndex((seg, j) => split.some((s) => s[j] !== seg));
  const parts = [...split[0]];
  parts[at] = `{${split.map((s) => s[at]).join(",")}}`;
  return parts.join("/");
}

function row(jax: string, shape: string[], timm: string, how = "", convert: Convert = same): Conversion {
  return { jax: [jax], shapes: [shape], timm, how, convert };
}

/** Several Google arrays of one shape merged into one timm tensor. */
function group(jax: string[], shape: string[], timm: string, how: string, convert: Convert): Conversion {
  return { jax, shapes: jax.map(() => shape), timm, how, convert };
}

function same(xs: Float32Array[], shapes: number[][]): TimmTensor {
  return { shape: shapes[0], data: xs[0] };
}

/** numpy's `transpose(perm)` of a single input. */
function permuteTo(perm: number[]): Convert {
  return (xs, shapes) => ({ shape: perm.map((p) => shapes[0][p]), data: permute(xs[0], shapes[0], perm) });
}

/** Flax Dense kernels are [in, out] per head: [D, H, K] → reshape(D, H·K).T → [H·K, D]; q, k, v stacked. */
function qkvWeight(xs: Float32Array[], shapes: number[][]): TimmTensor {
  const [d, h, k] = shapes[0];
  return { shape: [3 * h * k, d], data: concat(xs.map((x) => permute(x, [d, h * k], [1, 0]))) };
}

function qkvBias(xs: Float32Array[]): TimmTensor {
  const data = concat(xs);
  return { shape: [data.length], data };
}

/** Flax's out projection is [H, K, D] (per-head input); timm's proj.weight is [out = D, in = H·K]. */
function projWeight(xs: Float32Array[], shapes: number[][]): TimmTensor {
  const [h, k, d] = shapes[0];
  // transpose(2,0,1) of [H, K, D] is the 2-D transpose of its [H·K, D] view.
  return { shape: [d, h * k], data: transpose2d(xs[0], h * k, d) };
}

/** Block-scoped rows expand block by block, so the output lists each block's tensors together. */
function expand(blocks: number[]): Conversion[] {
  const out: Conversion[] = [];
  let run: Conversion[] = [];
  const flush = () => {
    for (const i of blocks) {
      for (const c of run) {
        const s = (t: string) => t.replaceAll("{i}", String(i));
        out.push({ ...c, jax: c.jax.map(s), timm: s(c.timm) });
      }
    }
    run = [];
  };
  for (const c of TABLE) {
    if (c.timm.includes("{i}")) {
      run.push(c);
    } else {
      flush();
      out.push(c);
    }
  }
  flush();
  return out;
}

function checkShape(
  entry: string,
  shape: readonly number[],
  expected: readonly string[],
  timm: string,
  bound: Map<string, { size: number; from: string }>,
  alias: Map<string, string>,
  source: string,
): void {
  const sym = (s: string) => alias.get(s) ?? s;
  const fail = () => {
    const want = expected.map((s) => (/^\d+$/.test(s) ? s : (bound.get(sym(s))?.size ?? s)));
    const why = [...new Set(expected.map(sym))]
      .filter((s) => bound.has(s))
      .map((s) => `${s}=${bound.get(s)!.size} from "${bound.get(s)!.from}"`);
    return new CheckpointConversionError(
      `${source}: entry "${entry}" has shape [${shape.join(", ")}], expected [${want.join(", ")}]` +
        ` = [${expected.join(", ")}]${why.length > 0 ? ` (${why.join(", ")})` : ""} for timm "${timm}"`,
    );
  };
  if (shape.length !== expected.length) throw fail();
  const local = new Map<string, number>();
  expected.forEach((s, j) => {
    if (/^\d+$/.test(s)) {
      if (shape[j] !== Number(s)) throw fail();
      return;
    }
    const b = bound.get(sym(s))?.size ?? local.get(sym(s));
    if (b !== undefined && b !== shape[j]) throw fail();
    local.set(sym(s), shape[j]);
  });
  for (const [s, size] of local) if (!bound.has(s)) bound.set(s, { size, from: entry });
}

function q(s: string): string {
  return `"${s}"`;
}

function toF32(data: TypedData): Float32Array {
  if (data instanceof Float32Array) return data;
  const out = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = Number(data[i]);
  return out;
}

function concat(xs: Float32Array[]): Float32Array {
  const out = new Float32Array(xs.reduce((n, x) => n + x.length, 0));
  let at = 0;
  for (const x of xs) {
    out.set(x, at);
    at += x.length;
  }
  return out;
}
