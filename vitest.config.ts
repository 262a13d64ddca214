import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // tfjs backends are process-global; one file per worker process keeps them isolated.
    pool: "forks",
    fileParallelism: true,
    maxWorkers: 2,
    // Worker processes the tests start inherit this; their logs would drown the test output.
    env: { INFLORA_LOG_LEVEL: "warn" },
  },
});
