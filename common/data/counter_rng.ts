import { philox4x32 } from "./philox.js";

/**
 * A counter-based random stream keyed by a list of integers: the same key gives the same numbers in
 * every process and thread, with no state to ship. The key is absorbed into 128 bits by chaining
 * Philox4x32-10 (a keyed bijection) over the key words; the stream is then Philox of a block counter
 * under that digest.
 */
export interface CounterRng {
  /** Uniform in [0, 1) with 53 random bits. */
  nextFloat(): number;
  /** Uniform 32-bit unsigned integer. */
  nextUint32(): number;
}

const TWO32 = 4294967296;
const ABSORB_K0 = 0xa4093822;
const ABSORB_K1 = 0x299f31d0;

export function counterRng(...key: number[]): CounterRng {
  const state = new Uint32Array([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344]);
  const block = new Uint32Array(4);
  key.forEach((x, i) => {
    if (!Number.isSafeInteger(x))
      throw new RangeError(`counterRng key words must be safe integers, got ${x}`);
    // Two's-complement 64-bit words, so negative words (e.g. epoch -1) are distinct keys.
    block[0] = state[0] ^ (((x % TWO32) + TWO32) % TWO32);
    block[1] = state[1] ^ (Math.floor(x / TWO32) >>> 0);
    block[2] = state[2] ^ i;
    block[3] = state[3] ^ 0x6b657977;
    philox4x32(block, ABSORB_K0, ABSORB_K1, state);
  });
  // The length ends the key, so (1, 2) and (1, 2, 0) differ.
  block[0] = state[0] ^ key.length;
  block[1] = state[1];
  block[2] = state[2];
  block[3] = state[3] ^ 0x656e6421;
  philox4x32(block, ABSORB_K0, ABSORB_K1, state);

  const k0 = state[0];
  const k1 = state[1];
  const ctr = new Uint32Array([0, 0, state[2], state[3]]);
  const out = new Uint32Array(4);
  let blockIndex = 0;
  let used = 4;
  const nextUint32 = (): number => {
    if (used === 4) {
      ctr[0] = blockIndex % TWO32;
      ctr[1] = Math.floor(blockIndex / TWO32);
      blockIndex++;
      philox4x32(ctr, k0, k1, out);
      used = 0;
    }
    return out[used++];
  };
  return {
    nextUint32,
    nextFloat: () => ((nextUint32() >>> 5) * 67108864 + (nextUint32() >>> 6)) / 9007199254740992,
  };
}
