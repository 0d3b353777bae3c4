import { afterEach, describe, expect, it } from "vitest";
import type { Config } from "../../src/config.js";
import { startServer, type TestServer } from "../helpers/server.js";
import { openStream } from "../helpers/stream.js";

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** The `retry:` value each of `count` new streams announces. */
async function announced(overrides: Partial<Config>, count: number): Promise<number[]> {
  server = await startServer(overrides);
  const streams = await Promise.all(Array.from({ length: count }, () => openStream(`${server?.url}/events`)));
  try {
    await Promise.all(streams.map((s) => s.until("the retry line", (x) => x.retry !== undefined)));
    return streams.map((s) => s.retry as number);
  } finally {
    for (const s of streams) s.close();
  }
}

describe("RETRY_JITTER_MS: the retry each stream announces", () => {
  it("lies in [RETRY_MS, RETRY_MS + RETRY_JITTER_MS], and differs between streams", async () => {
    const values = await announced({ retryMs: 1_000, retryJitterMs: 640 }, 30);
    for (const value of values) {
      expect(value).toBeGreaterThanOrEqual(1_000);
      expect(value).toBeLessThanOrEqual(1_640);
    }
    // Each stream picks one of 64 values uniformly: all 30 agree with probability 64^-29 (about 1e-52).
    expect(new Set(values).size).toBeGreaterThanOrEqual(2);
  });

  it("is spread over half of RETRY_MS when RETRY_JITTER_MS is unset", async () => {
    const values = await announced({ retryMs: 1_000, retryJitterMs: undefined }, 30);
    for (const value of values) {
      expect(value).toBeGreaterThanOrEqual(1_000);
      expect(value).toBeLessThanOrEqual(1_500);
    }
    expect(new Set(values).size).toBeGreaterThanOrEqual(2);
  });

  it("is exactly RETRY_MS for every stream with RETRY_JITTER_MS=0", async () => {
    expect(await announced({ retryMs: 1_000, retryJitterMs: 0 }, 30)).toEqual(Array(30).fill(1_000));
  });
});
