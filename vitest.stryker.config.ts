import { defineConfig } from "vitest/config";

/**
 * The tests Stryker runs against each mutant (`npm run test:mutation`): unit, contract and the
 * in-process integration tests of the mutated core. Browser and spawned-process tests are left
 * out: they test `dist/`, which Stryker does not mutate, and would make a run take hours.
 */
export default defineConfig({
  test: {
    include: [
      "test/unit/**/*.test.ts",
      "test/contract/**/*.test.ts",
      "test/integration/replay.test.ts",
      "test/integration/stream.test.ts",
      "test/integration/envelope.test.ts",
      "test/integration/publish.test.ts",
      "test/integration/storage-failure.test.ts",
      "test/integration/resume-ids.test.ts",
      "test/integration/replay-memory.test.ts",
      "test/integration/mercure.test.ts",
      "test/integration/mercure-replay.test.ts",
    ],
    exclude: ["test/unit/bench-*.test.ts"],
    // Multi-megabyte replays, run for every mutant they cover: slow, and the next replay test
    // ("while history is being read") covers the same hand-over deterministically.
    testNamePattern: /^(?!.*race the reconnect)/,
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
