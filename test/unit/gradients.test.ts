/**
 * The gradients the worker returns for A (k and v) and the head equal central finite differences of the
 * summed cross-entropy (test/helpers/gradient_check.ts), on the cpu backend.
 */
import { beforeAll, describe, it } from "vitest";
import { selectBackend } from "../../worker/backend.js";
import { expectGradientsMatchFiniteDifferences } from "../helpers/gradient_check.js";

describe("training gradients", () => {
  beforeAll(async () => {
    await selectBackend("cpu");
  });

  it("match central finite differences for A_k, A_v and the head", async () => {
    await expectGradientsMatchFiniteDifferences();
  });
});
