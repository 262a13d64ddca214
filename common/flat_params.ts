/**
 * The flat float32 layout of a step's trainable tensors, one contract for the gradients a worker returns
 * (TrainStepResponse.grads) and the parameters the coordinator publishes (ParamSet.values): A_k of blocks
 * 0…depth−1 ([D, r] each, row-major), A_v of blocks 0…depth−1, the head weight [classes, D], the head
 * bias [classes].
 */

export interface FlatShape {
  readonly D: number;
  readonly depth: number;
  readonly rank: number;
  readonly classes: number;
}

export interface FlatTensors {
  readonly Ak: Float32Array[];
  readonly Av: Float32Array[];
  readonly weight: Float32Array;
  readonly bias: Float32Array;
}

export function flatLength({ D, depth, rank, classes }: FlatShape): number {
  return 2 * depth * D * rank + classes * (D + 1);
}

/** The tensors in layout order, copied into one vector (their sizes are not checked: a receiver's job). */
export function flatten(t: FlatTensors): Float32Array {
  const parts = [...t.Ak, ...t.Av, t.weight, t.bias];
  const flat = new Float32Array(parts.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of parts) {
    flat.set(a, at);
    at += a.length;
  }
  return flat;
}

/** Views of `flat` (flatLength(s) elements) as the tensors. */
export function unflatten(flat: Float32Array, s: FlatShape): FlatTensors {
  const per = s.D * s.rank;
  const block = (k: number) => flat.subarray(k * per, (k + 1) * per);
  const head = 2 * s.depth * per;
  return {
    Ak: Array.from({ length: s.depth }, (_, b) => block(b)),
    Av: Array.from({ length: s.depth }, (_, b) => block(s.depth + b)),
    weight: flat.subarray(head, head + s.classes * s.D),
    bias: flat.subarray(head + s.classes * s.D, head + s.classes * (s.D + 1)),
  };
}

/** Which tensor element `index` of the vector is, named as the gradients are: `["grad_Av[3]", 17]`. */
export function flatElement(index: number, s: FlatShape): [name: string, element: number] {
  const per = s.D * s.rank;
  const head = 2 * s.depth * per;
  if (index < s.depth * per) return [`grad_Ak[${Math.floor(index / per)}]`, index % per];
  if (index < head)
    return [`grad_Av[${Math.floor((index - s.depth * per) / per)}]`, (index - s.depth * per) % per];
  if (index < head + s.classes * s.D) return ["grad_head_w", index - head];
  return ["grad_head_b", index - head - s.classes * s.D];
}
