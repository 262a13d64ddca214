import { numpyPermutation } from "./numpy_random.js";

/**
 * scikit-learn's `train_test_split(range(n), test_size=testFraction, random_state=seed)`: numpy's
 * seeded permutation, the first ceil(testFraction·n) indices are the test set. Both index lists come
 * back ascending, the order ImageFolder gives once the files sit in train/ and test/ folders.
 */
export function trainTestSplit(
  n: number,
  testFraction: number,
  seed: number,
): { train: number[]; test: number[] } {
  if (!(testFraction > 0 && testFraction < 1))
    throw new RangeError(`test fraction must be in (0, 1), got ${testFraction}`);
  const nTest = Math.ceil(testFraction * n);
  const perm = numpyPermutation(seed, n);
  const test = perm.slice(0, nTest).sort((a, b) => a - b);
  const train = perm.slice(nTest).sort((a, b) => a - b);
  return { train, test };
}
