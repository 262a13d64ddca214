import { numpyPermutation } from "./numpy_random.js";

/**
 * The reference's class order: identity unless `shuffle`, then numpy's
 * `np.random.seed(seed); np.random.permutation(numClasses)`. Position p of the order holds the original
 * class id that becomes label p.
 */
export function classOrder(numClasses: number, shuffle: boolean, seed: number): number[] {
  if (!Number.isInteger(numClasses) || numClasses <= 0) {
    throw new RangeError(`number of classes must be a positive integer, got ${numClasses}`);
  }
  if (!shuffle) return Array.from({ length: numClasses }, (_, i) => i);
  return numpyPermutation(seed, numClasses);
}

/** Maps original class ids to their position in `order` (the reference's `order.index(y)`). */
export function labelMap(order: readonly number[]): Int32Array {
  const map = new Int32Array(order.length).fill(-1);
  order.forEach((cls, pos) => {
    if (!Number.isInteger(cls) || cls < 0 || cls >= order.length || map[cls] !== -1) {
      throw new RangeError(`class order is not a permutation of 0..${order.length - 1}`);
    }
    map[cls] = pos;
  });
  return map;
}

/**
 * Task sizes as the reference's DataManager builds them: `[init_cls]`, then `increment` while the sum
 * plus one more increment stays below the number of classes, then the rest if any.
 */
export function taskSizes(initCls: number, increment: number, numClasses: number): number[] {
  for (const [name, v] of [
    ["init_cls", initCls],
    ["increment", increment],
    ["number of classes", numClasses],
  ] as const) {
    if (!Number.isInteger(v) || v <= 0) throw new RangeError(`${name} must be a positive integer, got ${v}`);
  }
  if (initCls > numClasses) {
    throw new RangeError(`init_cls (${initCls}) exceeds the number of classes (${numClasses})`);
  }
  const sizes = [initCls];
  let sum = initCls;
  while (sum + increment < numClasses) {
    sizes.push(increment);
    sum += increment;
  }
  if (numClasses - sum > 0) sizes.push(numClasses - sum);
  return sizes;
}
