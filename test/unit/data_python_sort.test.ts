import { describe, expect, it } from "vitest";
import { compareCodePoints } from "../../common/data/python_sort.js";

describe("compareCodePoints", () => {
  it("sorts as Python's sorted() does: by code point, astral characters last", () => {
    const names = ["b", "😀", "a", "\uffff", "B", "é", "a b", "a/b", "ab"];
    // Python: sorted(names) == ['B', 'a', 'a b', 'a/b', 'ab', 'b', 'é', '\uffff', '😀']
    expect([...names].sort(compareCodePoints)).toEqual([
      "B",
      "a",
      "a b",
      "a/b",
      "ab",
      "b",
      "é",
      "\uffff",
      "😀",
    ]);
    // JS's default order differs exactly there
    expect([...names].sort().slice(-2)).toEqual(["😀", "\uffff"]);
  });
});
