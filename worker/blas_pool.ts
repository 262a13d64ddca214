/**
 * Recycles the float32 output buffers of the blas backend's kernels. Fresh memory is expensive here: a new
 * Float32Array is freed only when V8 next collects garbage, so every kernel output would land on fresh
 * pages (measured: 11 ms of page faults to fill 3 MB, against 0.13 ms for the arithmetic). Buffers come
 * back when the last tensor using them is disposed.
 *
 * A buffer is recycled only when nothing outside the backend can still see it: it was allocated here,
 * every tensor (dataId) whose values are it or a view of it was disposed, and it was never handed out by
 * readSync/read (tensor.dataSync() returns the cpu backend's own array, which callers keep).
 *
 * A request takes an idle buffer of exactly its size, else the smallest idle one up to twice its size (as
 * a view of its first n elements — the cpu backend's own Slice returns such views too): with exact sizes
 * only, buffers freed by the forward pass sat idle while the backward pass allocated other sizes (1 GiB
 * idle at the peak of a ViT-B/16 step).
 */

interface Owned {
  /** The array take() handed out (views of it may back other tensors). */
  readonly array: Float32Array;
  /** Live dataIds whose values are this buffer or a view of it. */
  refs: number;
}

export class BufferPool {
  private readonly owned = new Map<ArrayBufferLike, Owned>();
  private readonly free = new Map<number, Float32Array[]>();
  /** The keys of `free`, ascending. */
  private readonly sizes: number[] = [];
  private freeBytes = 0;

  /** `maxFreeBytes` caps what idle buffers may hold (they count towards the resident set). */
  constructor(private readonly maxFreeBytes: number) {}

  /** A float32 array of exactly n elements with arbitrary contents: the caller overwrites all of it. */
  take(n: number): Float32Array {
    if (n === 0) return new Float32Array(0);
    const reused = this.bestFit(n);
    const array = reused ?? new Float32Array(n);
    if (reused) this.freeBytes -= reused.byteLength;
    this.owned.set(array.buffer, { array, refs: 0 });
    return array.length === n ? array : array.subarray(0, n);
  }

  /** The smallest idle buffer of n to 2n elements, removed from the idle lists. */
  private bestFit(n: number): Float32Array | undefined {
    const { sizes } = this;
    let lo = 0;
    let hi = sizes.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (sizes[mid] < n) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < sizes.length && sizes[i] <= 2 * n; i++) {
      const found = this.free.get(sizes[i])!.pop();
      if (found) return found;
    }
    return undefined;
  }

  /** A dataId now holds `values`. */
  retain(values: unknown): void {
    const o = this.lookup(values);
    if (o) o.refs++;
  }

  /** A dataId holding `values` was deleted. */
  release(values: unknown): void {
    const o = this.lookup(values);
    if (!o) return;
    o.refs--;
    if (o.refs > 0) return;
    this.owned.delete(o.array.buffer);
    if (this.freeBytes + o.array.byteLength > this.maxFreeBytes) return;
    const n = o.array.length;
    const list = this.free.get(n);
    if (list) list.push(o.array);
    else {
      this.free.set(n, [o.array]);
      let i = this.sizes.length;
      while (i > 0 && this.sizes[i - 1] > n) i--;
      this.sizes.splice(i, 0, n);
    }
    this.freeBytes += o.array.byteLength;
  }

  /** `values` left the backend (readSync/read): never recycle its buffer. */
  expose(values: unknown): void {
    if (ArrayBuffer.isView(values)) this.owned.delete(values.buffer);
  }

  /** Drops every idle buffer. */
  clear(): void {
    this.free.clear();
    this.sizes.length = 0;
    this.freeBytes = 0;
  }

  get idleBytes(): number {
    return this.freeBytes;
  }

  private lookup(values: unknown): Owned | undefined {
    return ArrayBuffer.isView(values) ? this.owned.get(values.buffer) : undefined;
  }
}
