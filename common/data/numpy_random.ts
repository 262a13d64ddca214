/**
 * numpy's legacy `RandomState` (MT19937), as far as class orders need it: `np.random.seed(seed)` for an
 * integer seed and `np.random.permutation(n)`, reproduced bit for bit.
 */

const N = 624;
const M = 397;

/** MT19937 seeded the way numpy seeds it from a 32-bit integer (`mt19937_seed`, i.e. `init_genrand`). */
export class MersenneTwister {
  private readonly mt = new Uint32Array(N);
  private pos = N;

  constructor(seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
      // numpy raises for these too ("Seed must be between 0 and 2**32 - 1").
      throw new RangeError(`numpy seed must be an integer in 0..2^32-1, got ${seed}`);
    }
    const mt = this.mt;
    mt[0] = seed >>> 0;
    for (let i = 1; i < N; i++) {
      const prev = mt[i - 1];
      mt[i] = (Math.imul(1812433253, prev ^ (prev >>> 30)) + i) >>> 0;
    }
  }

  nextUint32(): number {
    if (this.pos >= N) this.twist();
    let y = this.mt[this.pos++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  private twist(): void {
    const mt = this.mt;
    for (let i = 0; i < N; i++) {
      const y = (mt[i] & 0x80000000) | (mt[(i + 1) % N] & 0x7fffffff);
      mt[i] = mt[(i + M) % N] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
    }
    this.pos = 0;
  }

  /**
   * numpy's `random_interval(max)`: a uniform integer in [0, max] by masked rejection sampling on 32-bit
   * draws (the only case here: max < 2^32).
   */
  interval(max: number): number {
    if (max === 0) return 0;
    let mask = max;
    mask |= mask >>> 1;
    mask |= mask >>> 2;
    mask |= mask >>> 4;
    mask |= mask >>> 8;
    mask |= mask >>> 16;
    mask >>>= 0;
    for (;;) {
      const value = (this.nextUint32() & mask) >>> 0;
      if (value <= max) return value;
    }
  }
}

/** `np.random.seed(seed); np.random.permutation(n).tolist()` with numpy's legacy generator. */
export function numpyPermutation(seed: number, n: number): number[] {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new RangeError(`permutation size must be a non-negative integer, got ${n}`);
  }
  const rng = new MersenneTwister(seed);
  const out = Array.from({ length: n }, (_, i) => i);
  // The legacy shuffle: Fisher–Yates from the end, j = random_interval(i).
  for (let i = n - 1; i > 0; i--) {
    const j = rng.interval(i);
    const t = out[i];
    out[i] = out[j];
    out[j] = t;
  }
  return out;
}
