import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { waitFor } from "./wait.js";

/** The Redis that CI starts (and these machines run): 127.0.0.1:6379, unless REDIS_URL says otherwise. */
export const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

/** A key prefix no other test run uses. */
export function uniquePrefix(): string {
  return `herald-test:${process.pid}:${randomBytes(4).toString("hex")}`;
}

/**
 * A server's settings for the test Redis under a fresh key prefix, which is added to `prefixes`
 * for the test file to `deleteKeys` afterwards.
 */
export function redisSettings(prefixes: string[]) {
  const redisPrefix = uniquePrefix();
  prefixes.push(redisPrefix);
  return { broker: "redis" as const, redisUrl: REDIS_URL, redisPrefix };
}

/** Deletes every key under `prefix`. */
export async function deleteKeys(prefix: string, url = REDIS_URL): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
  } finally {
    redis.disconnect();
  }
}

/**
 * Waits until the clock of the Redis at `url` has passed the millisecond of stream id `sid`: ids
 * are `<ms>-<n>`, and what is keyed by an entry's millisecond moves on only after it.
 */
export async function pastMillisecondOf(sid: string, url = REDIS_URL): Promise<void> {
  const ms = Number(sid.slice(0, sid.indexOf("-")));
  const redis = new Redis(url);
  try {
    await waitFor(`Redis's clock to pass ${ms} ms`, async () => {
      const [s, us] = await redis.time();
      return Number(s) * 1000 + Math.floor(Number(us) / 1000) > ms;
    });
  } finally {
    redis.disconnect();
  }
}
