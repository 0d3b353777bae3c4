import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type HeraldProcess, runHerald } from "../helpers/process.js";
import { publishTo } from "../helpers/publish.js";
import { uniquePrefix } from "../helpers/redis.js";
import { type RedisServer, startRedisServer } from "../helpers/redis-server.js";
import { type OpenStream, openStream } from "../helpers/stream.js";
import { waitFor } from "../helpers/wait.js";

const running: HeraldProcess[] = [];
const streams: OpenStream[] = [];
afterEach(() => {
  for (const s of streams.splice(0)) s.close();
  for (const p of running.splice(0)) p.child.kill("SIGKILL");
});

/** Starts `n` Herald nodes sharing one Redis under a fresh prefix; resolves with their URLs. */
async function startCluster(redisUrl: string, n: number): Promise<{ urls: string[]; nodes: HeraldProcess[] }> {
  const env = { BROKER: "redis", REDIS_URL: redisUrl, REDIS_PREFIX: uniquePrefix(), LOG_LEVEL: "info" };
  const nodes = Array.from({ length: n }, () => runHerald(env));
  running.push(...nodes);
  return { urls: await Promise.all(nodes.map((node) => node.url)), nodes };
}

async function subscribe(url: string, headers: Record<string, string> = {}): Promise<OpenStream> {
  const stream = await openStream(`${url}/events?topic=c`, headers);
  streams.push(stream);
  await stream.until("the stream to open", (s) => s.retry !== undefined);
  return stream;
}

const ids = (s: OpenStream) => s.events.map((e) => e.lastEventId);
const hasEnd = (s: OpenStream) => s.events.at(-1)?.data === "end";

describe("a cluster of Herald nodes on Redis", () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedisServer(true);
  });
  afterAll(() => redis.stop());

  it("delivers every event to every subscriber on every node exactly once, in one order", async () => {
    const { urls } = await startCluster(redis.url, 3);
    const subscribers = [];
    for (const url of urls) subscribers.push(await subscribe(url), await subscribe(url));
    const total = 300;
    let next = 0;
    const publisher = async () => {
      while (next < total) {
        const i = next++;
        const { status } = await publishTo(urls[i % 3] as string, { topic: "c", data: `${i}` });
        expect(status).toBe(201);
      }
    };
    await Promise.all(Array.from({ length: 6 }, publisher));
    await publishTo(urls[0] as string, { topic: "c", data: "end" });
    for (const s of subscribers) await s.until("the end marker", hasEnd, 20_000);

    const order = ids(subscribers[0] as OpenStream);
    expect(order).toHaveLength(total + 1);
    expect(new Set(order).size).toBe(total + 1);
    for (const s of subscribers) expect(ids(s)).toEqual(order);
    const data = (subscribers[0] as OpenStream).events.map((e) => e.data);
    expect(new Set(data)).toEqual(new Set([...Array.from({ length: total }, (_, i) => `${i}`), "end"]));
  });

  it("lets the clients of a node killed mid-publish resume on another node with no gap and no double", async () => {
    const { urls, nodes } = await startCluster(redis.url, 3);
    const [doomed, survivor, other] = urls as [string, string, string];
    const reference = await subscribe(survivor);
    const orphans = [await subscribe(doomed), await subscribe(doomed), await subscribe(doomed)];
    let next = 0;
    const total = 400;
    const publisher = async () => {
      while (next < total) {
        const i = next++;
        await publishTo(i % 2 ? survivor : other, { topic: "c", data: `${i}` });
      }
    };
    const publishing = Promise.all(Array.from({ length: 4 }, publisher));
    await reference.until("publishing to be under way", (s) => s.events.length >= 100, 20_000);
    nodes[0]?.child.kill("SIGKILL");
    const resumed = [];
    for (const orphan of orphans) {
      await orphan.until("its node to die", (s) => s.ended, 10_000);
      const last = orphan.events.at(-1)?.lastEventId;
      resumed.push(await subscribe(survivor, last === undefined ? {} : { "last-event-id": last }));
    }
    await publishing;
    await publishTo(other, { topic: "c", data: "end" });
    await reference.until("the end marker", hasEnd, 20_000);
    const order = ids(reference);
    expect(order).toHaveLength(total + 1);
    for (const [i, orphan] of orphans.entries()) {
      const after = resumed[i] as OpenStream;
      await after.until("the end marker", hasEnd, 20_000);
      expect([...ids(orphan), ...ids(after)]).toEqual(order);
    }
  });

  it("survives a Redis restart: 503s while it is down, then resumes streams and keeps acknowledged history", async () => {
    const { urls } = await startCluster(redis.url, 2);
    const [a, b] = urls as [string, string];
    const subscribers = [await subscribe(a), await subscribe(b)];
    const published: string[] = [];
    for (let i = 0; i < 10; i++)
      published.push((await publishTo(i % 2 ? a : b, { topic: "c", data: `${i}` })).json.id as string);
    for (const s of subscribers) await s.until("the first events", (x) => x.events.length === 10, 10_000);

    await redis.stop();
    for (const url of urls) {
      const down = await publishTo(url, { topic: "c", data: "lost?" });
      expect(down.status).toBe(503);
      expect(down.json).toMatchObject({
        code: "HERALD_BROKER_UNAVAILABLE",
        message: expect.stringContaining("not stored"),
      });
      const health = await fetch(`${url}/health`);
      expect(health.status).toBe(503);
      expect(await health.json()).toMatchObject({ status: "unavailable" });
    }
    for (const s of subscribers) expect(s.ended).toBe(false);

    await redis.start();
    for (const url of urls) {
      await waitFor(`${url} to be healthy again`, async () => (await fetch(`${url}/health`)).status === 200, 15_000);
    }
    for (let i = 10; i < 15; i++)
      published.push((await publishTo(i % 2 ? a : b, { topic: "c", data: `${i}` })).json.id as string);
    for (const s of subscribers) {
      await s.until("the events after the restart", (x) => x.events.length === 15, 15_000);
      expect(ids(s)).toEqual(published);
    }
    // Acknowledged before the restart, so replayable after it (Redis ran with appendfsync always).
    const late = await subscribe(b, { "last-event-id": published[4] as string });
    await late.until("the replay", (x) => x.events.length === 10, 10_000);
    expect(ids(late)).toEqual(published.slice(5));
  });
});
