/**
 * The one table of PyTorch `.pth` layouts (beside jax_to_timm.ts, the table for Google's .npz): where in
 * the checkpoint's object the ViT's state_dict sits, and which name prefixes to strip to get timm names.
 * The tensors themselves keep timm's layouts in every case (DINO and iBOT build timm-style ViTs), so the
 * values pass through unchanged: float32 bit for bit, float16/bfloat16 widened exactly.
 */

import type { PyValue } from "../../common/pickle.js";
import { TorchTensor } from "../../common/pth.js";
import { CheckpointConversionError } from "./jax_to_timm.js";

export interface PthLayout {
  readonly id: string;
  /** Key of the top-level dict that holds the state_dict; null: the top level is the state_dict. */
  readonly key: string | null;
  readonly description: string;
}

/**
 * In every layout, names lose DataParallel's `module.` and then DINO/iBOT's `backbone.`; when some names
 * carry `backbone.`, the others (DINO's and iBOT's projection heads) are left out and reported. The first
 * layout found is the default; `teacher` before `student` because DINO and iBOT evaluate the teacher.
 */
// biome-ignore format: one layout per line
export const PTH_LAYOUTS: readonly PthLayout[] = [
  { id: "teacher", key: "teacher", description: "DINO/iBOT full checkpoint: the teacher network" },
  { id: "student", key: "student", description: "DINO/iBOT full checkpoint: the student network" },
  { id: "state_dict", key: "state_dict", description: '{"state_dict": …}: iBOT\'s released teacher, timm training checkpoints' },
  { id: "timm", key: null, description: "a state_dict at the top level, timm names" },
];

const STRIP = ["module.", "backbone."] as const;
const BACKBONE = "backbone.";

export interface PthSelection {
  readonly layout: PthLayout;
  /** Every layout the checkpoint has (the chosen one included). */
  readonly found: readonly string[];
  /** timm name → tensor. */
  readonly tensors: Map<string, TorchTensor>;
  /** Names in the chosen state_dict that were left out (projection heads, non-tensor entries). */
  readonly ignored: readonly string[];
}

/** Finds the layouts in `root`, picks `want` (or the first found), and maps its names to timm's. */
export function selectPthLayout(root: PyValue, source: string, want?: string): PthSelection {
  if (want !== undefined && !PTH_LAYOUTS.some((l) => l.id === want)) {
    throw new CheckpointConversionError(
      `${source}: unknown layout "${want}"; known: ${PTH_LAYOUTS.map((l) => l.id).join(", ")}`,
    );
  }
  const stateDicts = new Map<string, Map<string | number, PyValue>>();
  for (const l of PTH_LAYOUTS) {
    const d = root instanceof Map ? (l.key === null ? root : root.get(l.key)) : undefined;
    if (d instanceof Map && [...d.values()].some((v) => v instanceof TorchTensor)) stateDicts.set(l.id, d);
  }
  const found = [...stateDicts.keys()];
  const id = want ?? found[0];
  const dict = id === undefined ? undefined : stateDicts.get(id);
  if (dict === undefined) {
    throw new CheckpointConversionError(
      `${source}: ${want === undefined ? "no" : `no "${want}"`} state_dict of tensors found ` +
        `(layouts: ${PTH_LAYOUTS.map((l) => `${l.id}: ${l.description}`).join("; ")})` +
        (found.length > 0 ? `; this file has: ${found.join(", ")}` : ""),
    );
  }
  const unwrapped = [...dict].map(([k, v]) => {
    const name = String(k);
    return { name, short: name.startsWith("module.") ? name.slice(7) : name, value: v };
  });
  const backboneOnly = unwrapped.some((e) => e.short.startsWith(BACKBONE));
  const tensors = new Map<string, TorchTensor>();
  const ignored: string[] = [];
  for (const { name, short, value } of unwrapped) {
    if (!(value instanceof TorchTensor) || (backboneOnly && !short.startsWith(BACKBONE))) {
      ignored.push(name);
      continue;
    }
    let timm = name;
    for (const p of STRIP) if (timm.startsWith(p)) timm = timm.slice(p.length);
    if (tensors.has(timm)) {
      throw new CheckpointConversionError(`${source}: two entries map to the timm name "${timm}"`);
    }
    tensors.set(timm, value);
  }
  return { layout: PTH_LAYOUTS.find((l) => l.id === id)!, found, tensors, ignored };
}

/** The layouts as text, for docs and help. */
export function describePthLayouts(): string[] {
  return [
    `PyTorch .pth → timm (prefixes "${STRIP.join('", "')}" stripped; with "${BACKBONE}" names present, the others are left out):`,
    ...PTH_LAYOUTS.map((l) => `${l.id}: ${l.description}${l.key === null ? "" : ` (key "${l.key}")`}`),
  ];
}
