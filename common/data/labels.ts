import { DataError } from "./errors.js";

/**
 * Turns raw numeric labels into label ids: classes are the sorted distinct training labels, and a test
 * label that is not one of them is an error naming `testFile`.
 */
export function numericClasses(
  train: ArrayLike<number>,
  test: ArrayLike<number>,
  trainFile: string,
  testFile: string,
): { classNames: string[]; train: Int32Array; test: Int32Array } {
  const distinct = [...new Set(Array.from(train))].sort((a, b) => a - b);
  if (distinct.length === 0) throw new DataError("the training split has no samples", trainFile);
  const id = new Map(distinct.map((v, i) => [v, i] as const));
  const map = (values: ArrayLike<number>, file: string): Int32Array => {
    const out = new Int32Array(values.length);
    for (let i = 0; i < values.length; i++) {
      const k = id.get(values[i]);
      if (k === undefined) {
        throw new DataError(
          `label ${values[i]} of sample ${i} is out of range: the training split has classes ${describe(distinct)}`,
          file,
        );
      }
      out[i] = k;
    }
    return out;
  };
  return { classNames: distinct.map(String), train: map(train, trainFile), test: map(test, testFile) };
}

function describe(values: readonly number[]): string {
  const contiguous = values.every((v, i) => v === values[0] + i);
  if (contiguous) return `${values[0]}..${values[values.length - 1]}`;
  return values.length <= 12 ? values.join(", ") : `${values.slice(0, 12).join(", ")}, … (${values.length})`;
}
