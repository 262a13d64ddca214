import * as tf from "@tensorflow/tfjs-core";

/**
 * tf.tidy for results that are plain objects of tensors (interfaces with readonly fields do not satisfy
 * tfjs's TensorContainer index signature, although tidy walks them all the same).
 */
export function tidyAll<T>(fn: () => T): T {
  return tf.tidy(fn as unknown as () => tf.TensorContainer) as unknown as T;
}

/** tf.dispose for such objects. */
export function disposeAll(value: unknown): void {
  tf.dispose(value as tf.TensorContainer);
}
