import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type HeraldProcess, runHerald } from "../helpers/process.js";
import { publishTo } from "../helpers/publish.js";
import { uniquePrefix } from "../helpers/redis.js";
import { type RedisServer, startRedisServer } from "../helpers/redis-server.js";
import { type OpenStream, openStream } from "../helpers/stream.js";

const running: HeraldProcess[] = [];
const streams: OpenStream[] = [];
afterEach(() => {
  for (const s of streams.splice(0)) s.close();
  for (const p of running.splice(0)) {
    p.child.kill("SIGCONT");
    p.child.kill("SIGKILL");
  }
});

async function subscribe(url: string, headers: Record<string, string> = {}): Promise<OpenStream> {
  const stream = await openStream(`${url}/events?topic=g`, headers);
  streams.push(stream);
  await stream.until("the stream to open", (s) => s.retry !== undefined);
  return stream;
}

describe("a Redis node whose reader falls behind trimming", () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedisServer(false);
  });
  afterAll(() => redis.stop());

  it("ends its streams instead of skipping events, and their resume gets a reset", async () => {
    const env = { BROKER: "redis", REDIS_URL: redis.url, REDIS_PREFIX: uniquePrefix(), HISTORY_SIZE: "5" };
    const [a, b] = [runHerald(env), runHerald(env)] as [HeraldProcess, HeraldProcess];
    running.push(a, b);
    const [urlA, urlB] = await Promise.all([a.url, b.url]);
    const onA = await subscribe(urlA);
    expect((await publishTo(urlB, { topic: "g", data: "1" })).status).toBe(201);
    await onA.until("the first event", (s) => s.events.length === 1);

    // A stalls (a long GC pause, a partition) while B publishes far more than history keeps.
    a.child.kill("SIGSTOP");
    for (let i = 2; i <= 31; i++) expect((await publishTo(urlB, { topic: "g", data: `${i}` })).status).toBe(201);
    a.child.kill("SIGCONT");

    await onA.until("A to end the stream", (s) => s.ended, 15_000);
    const seen = onA.events.map((e) => Number(e.data));
    // What A delivered before it noticed is a gapless prefix: never 1, 27–31.
    expect(seen).toEqual(Array.from({ length: seen.length }, (_, i) => i + 1));
    expect(seen.length).toBeLessThan(27);

    const resumed = await subscribe(urlA, { "last-event-id": onA.events.at(-1)?.lastEventId as string });
    const [first] = await resumed.take(1);
    expect(first?.type).toBe("reset");
    const stats = (await (await fetch(`${urlA}/stats`)).json()) as { feedGaps: number };
    expect(stats.feedGaps).toBe(1);
    const statsB = (await (await fetch(`${urlB}/stats`)).json()) as { feedGaps: number };
    expect(statsB.feedGaps).toBe(0);
  }, 60_000);
});
