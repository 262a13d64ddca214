/** Every step runs inside tf.tidy or disposes what it made: the tensor count is flat across steps. */
import { afterAll, describe, it } from "vitest";
import { WorkerEngine } from "../../worker/engine.js";
import { expectFlatMemory } from "../helpers/memory_check.js";

const engine = new WorkerEngine();

afterAll(() => engine.close());

describe("tfjs memory", () => {
  it("has the same tensor count after step 1 and step 50, and after covariance and evaluation", async () => {
    await expectFlatMemory(engine, { shardsPerStep: 2 });
  });
});
