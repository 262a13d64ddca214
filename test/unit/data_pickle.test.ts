import { describe, expect, it } from "vitest";
import { type Latin1String, NumpyArray, numpyIntegers, parsePickle } from "../../common/data/pickle.js";

const bytes = (s: string) => new Uint8Array(Buffer.from(s, "latin1"));

describe("pickle reader", () => {
  it("reads protocol 0 text opcodes (dict, list, ints, quoted strings, memo)", () => {
    // pickle.dumps({'fine_labels': [1, 2], 'name': 'a\\nb'}, protocol=0) as Python 2 writes it
    const p = "(dp0\nS'fine_labels'\np1\n(lp2\nI1\naI2\nasS'name'\np3\nS'a\\nb'\np4\ns.";
    const v = parsePickle(bytes(p), "p0.pkl") as Map<string, unknown>;
    expect(v.get("fine_labels")).toEqual([1, 2]);
    expect(String(v.get("name") as Latin1String)).toBe("a\nb");
  });

  it("reads memoised references, tuples, longs, floats, booleans and None", () => {
    // protocol 2: [1] memoised, fetched again, paired: (x, x)
    const q = Uint8Array.from([0x80, 0x02, 0x5d, 0x71, 0x00, 0x4b, 0x01, 0x61, 0x68, 0x00, 0x86, 0x2e]);
    const pair = parsePickle(q, "x") as unknown[][];
    expect(pair).toEqual([[1], [1]]);
    expect(pair[0]).toBe(pair[1]); // the same object, as the memo says
    const r = Uint8Array.from([
      0x80, 0x02, 0x28, 0x8a, 0x01, 0xfe, 0x47, 0x3f, 0xe0, 0, 0, 0, 0, 0, 0, 0x88, 0x4e, 0x74, 0x2e,
    ]);
    expect(parsePickle(r, "x")).toEqual([-2, 0.5, true, null]);
  });

  it("reads numpy integer arrays of any byte order", () => {
    const a = new NumpyArray();
    a.shape = [2];
    a.dtype.byteOrder = ">";
    Object.assign(a.dtype, { descr: ">i4" });
    a.data = Uint8Array.from([0, 0, 1, 0, 0xff, 0xff, 0xff, 0xfe]);
    expect(numpyIntegers(a, "x")).toEqual([256, -2]);
  });

  it("refuses opcodes that build arbitrary objects", () => {
    // INST, OBJ, NEWOBJ, persistent ids, extension codes
    for (const op of [0x69, 0x6f, 0x81, 0x50, 0x51, 0x82]) {
      expect(() => parsePickle(Uint8Array.from([0x80, 0x02, op, 0x2e]), "evil.pkl")).toThrow(
        /evil\.pkl: .*opcode|evil\.pkl/,
      );
    }
    expect(() => parsePickle(Uint8Array.from([0x80, 0x02, 0x69, 0x2e]), "inst.pkl")).toThrow(
      /inst\.pkl: not a readable pickle: unsupported opcode 0x69 \(INST\) at byte 2/,
    );
    expect(() => parsePickle(bytes("c__builtin__\neval\n(S'1'\ntR."), "e.pkl")).toThrow(
      /refusing global __builtin__\.eval/,
    );
  });
});
