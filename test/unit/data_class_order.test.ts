import { describe, expect, it } from "vitest";
import { classOrder, labelMap, taskSizes } from "../../common/data/class_order.js";

describe("classOrder", () => {
  it("is the identity unless shuffled", () => {
    expect(classOrder(5, false, 1993)).toEqual([0, 1, 2, 3, 4]);
  });
  it("is numpy's permutation when shuffled", () => {
    // np.random.seed(0); np.random.permutation(10)
    expect(classOrder(10, true, 0)).toEqual([2, 8, 4, 9, 1, 6, 7, 3, 0, 5]);
  });
  it("maps classes to their position", () => {
    expect(Array.from(labelMap([2, 0, 1]))).toEqual([1, 2, 0]);
    expect(() => labelMap([0, 0, 1])).toThrow(/permutation/);
  });
});

describe("taskSizes (the reference DataManager)", () => {
  it("splits CIFAR-100 into ten tasks of ten", () => {
    expect(taskSizes(10, 10, 100)).toEqual(Array(10).fill(10));
  });
  it("splits ImageNet-R into 10, 5 or 20 tasks", () => {
    expect(taskSizes(20, 20, 200)).toEqual(Array(10).fill(20));
    expect(taskSizes(40, 40, 200)).toEqual(Array(5).fill(40));
    expect(taskSizes(10, 10, 200)).toEqual(Array(20).fill(10));
  });
  it("puts the remainder in a last, smaller task", () => {
    // 10 + 3·30 = 100 would reach n, so the loop stops at 10 + 3·29 = 97 and adds the rest, 3.
    expect(taskSizes(10, 3, 100)).toEqual([10, ...Array(29).fill(3), 3]);
    expect(taskSizes(10, 4, 20)).toEqual([10, 4, 4, 2]);
    expect(taskSizes(4, 4, 20)).toEqual([4, 4, 4, 4, 4]);
    expect(taskSizes(20, 5, 20)).toEqual([20]);
    expect(taskSizes(5, 10, 345)).toEqual([5, ...Array(33).fill(10), 10]);
  });
  it("refuses sizes that do not fit", () => {
    expect(() => taskSizes(21, 5, 20)).toThrow(/init_cls \(21\) exceeds/);
    expect(() => taskSizes(0, 5, 20)).toThrow(/init_cls/);
    expect(() => taskSizes(5, 0, 20)).toThrow(/increment/);
    expect(() => taskSizes(5, -1, 20)).toThrow(/increment/);
    expect(() => taskSizes(5, 2.5, 20)).toThrow(/increment/);
  });
});
