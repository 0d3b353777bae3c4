import { Redis } from "ioredis";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import type { StoredEvent } from "../../src/broker/broker.js";
import { BEFORE_FIRST_POS, EARLIEST_ID } from "../../src/broker/broker.js";
import { RedisBroker } from "../../src/broker/redis-broker.js";
import { deleteKeys, pastMillisecondOf, REDIS_URL, uniquePrefix } from "../helpers/redis.js";
import { redisCall, startRedisServer } from "../helpers/redis-server.js";
import { silentLogger } from "../helpers/server.js";
import { startTcpProxy } from "../helpers/tcp-proxy.js";
import { waitFor } from "../helpers/wait.js";

// A batch whose events have no publisher id is one stream entry in Redis (its events packed in
// it), so that Redis does nothing per event. These tests hold it to what an entry per event gave:
// ids of their own, replay and resume from any of them, delivery in order, and trimming to the
// newest HISTORY_SIZE events (a packed batch leaves whole).
const prefixes: string[] = [];
const open: RedisBroker[] = [];
const redis = new Redis(REDIS_URL);
afterEach(async () => {
  await Promise.all(open.splice(0).map((b) => b.close()));
});
afterAll(async () => {
  await Promise.all(prefixes.map((prefix) => deleteKeys(prefix)));
  redis.disconnect();
});

async function connect(historySize: number, prefix = uniquePrefix()) {
  prefixes.push(prefix);
  const broker = await RedisBroker.connect({ url: REDIS_URL, prefix, historySize, log: silentLogger });
  open.push(broker);
  return { broker, prefix };
}

const batchOf = (from: number, count: number) =>
  Array.from({ length: count }, (_, i) => ({ topic: "t", data: `${from + i}` }));
/** What `broker`'s subscription delivers, and how many gaps it reports. */
async function listen(broker: RedisBroker) {
  const heard = { seen: [] as StoredEvent[], gaps: 0 };
  await broker.subscribe(
    (e) => heard.seen.push(e),
    () => heard.gaps++,
  );
  return heard;
}

/** A packed entry's drawn key (field `k`), which names the key that holds its events. */
const drawnKeyOf = (fields: readonly string[]) => fields[fields.indexOf("k") + 1] as string;

/**
 * Two nodes on a private Redis: `publisher` connects straight to it, `other` through a TCP proxy
 * that the test can freeze; `heard` is what `other` delivers. `close` ends them all.
 */
async function twoNodesThroughProxy(historySize: number) {
  const server = await startRedisServer(false);
  const proxy = await startTcpProxy(server.port);
  const options = { prefix: "h", historySize, log: silentLogger };
  const publisher = await RedisBroker.connect({ ...options, url: server.url });
  const other = await RedisBroker.connect({ ...options, url: proxy.url });
  const heard = await listen(other);
  return {
    server,
    proxy,
    publisher,
    heard,
    async close() {
      await Promise.all([publisher.close(), other.close()]);
      await proxy.close();
      await server.kill();
    },
  };
}

const datas = (events: readonly StoredEvent[]) => events.map((e) => e.data);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => `${from + i}`);

describe("Redis: a batch without publisher ids", () => {
  it("is one stream entry, whose events have ids, positions and replays of their own", async () => {
    const { broker, prefix } = await connect(1_000);
    await broker.publish({ topic: "t", data: "0" });
    const results = await broker.publishBatch(batchOf(1, 500));
    const after = await broker.publish({ topic: "t", data: "501" });
    expect(await redis.xlen(`${prefix}:events`)).toBe(3);
    const ids = results.map((r) => r.event.id);
    expect(new Set(ids).size).toBe(500);
    // Consecutive stream ids in one millisecond; the next entry takes none of them.
    const [ms, seq] = (ids[0] as string).split("-");
    expect(ids).toEqual(ids.map((_, k) => `${ms}-${Number(seq) + k}`));
    expect(after.event.pos > (results[499]?.event.pos as string)).toBe(true);
    // Each id is found, and a read after it returns the rest, in pages that may stop inside the entry.
    for (const k of [0, 1, 250, 499]) {
      const location = await broker.locate(ids[k] as string);
      expect(location).toMatchObject({ found: true, pos: results[k]?.event.pos, head: { id: after.event.id } });
      expect(datas(await broker.read(location.pos as string, 3))).toEqual(range(k + 2, Math.min(k + 4, 501)));
    }
    let pos = BEFORE_FIRST_POS;
    const paged: StoredEvent[] = [];
    for (let page = await broker.read(pos, 70); page.length > 0; page = await broker.read(pos, 70)) {
      expect(page.length).toBeLessThanOrEqual(70);
      paged.push(...page);
      pos = page[page.length - 1]?.pos as string;
    }
    expect(datas(paged)).toEqual(range(0, 501));
    expect(paged.slice(1, 501)).toEqual(results.map((r) => r.event));
    // An id of the entry's millisecond beyond its events names nothing.
    expect((await broker.locate(`${ms}-${Number(seq) + 10_000}`)).found).toBe(false);
    // A stream id written with leading zeros is the same id, as Redis reads it.
    const padded = await broker.locate(`${ms}-0000000000000${Number(seq) + 1}`);
    expect(padded).toMatchObject({ found: true, pos: results[1]?.event.pos });
    expect(datas(await broker.read(padded.pos as string, 2))).toEqual(["3", "4"]);
    expect((await broker.locate(`${ms}-0000000000000${Number(seq) + 10_000}`)).found).toBe(false);
  });

  it("keeps its events out of the stream entry, in a key of their own that expires after the batch has left history", async () => {
    const { broker, prefix } = await connect(10);
    const results = await broker.publishBatch(batchOf(1, 5));
    const [[sid, fields]] = (await redis.xrange(`${prefix}:events`, "-", "+")) as [[string, string[]]];
    const key = drawnKeyOf(fields);
    expect([sid, fields]).toEqual([results[0]?.event.id, ["n", "1", "c", "5", "k", key]]);
    expect(JSON.parse((await redis.get(`${prefix}:pack:${key}`)) as string)).toHaveLength(5);
    // The batch's key retires once history starts after its millisecond; its pack goes with it.
    await pastMillisecondOf(sid);
    for (let n = 6; n <= 16; n++) await broker.publish({ topic: "t", data: `${n}` });
    expect(datas(await broker.read(BEFORE_FIRST_POS, 100))).toEqual(range(7, 16));
    expect(await redis.hexists(`${prefix}:ids`, key as string)).toBe(0);
    // Kept a little longer, for a reader that read the entry just before it left.
    const ttl = await redis.pttl(`${prefix}:pack:${key}`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(10_000);
  });

  it("reaches a reader on another node whole when the batch leaves history between reading its entry and its events", async () => {
    const nodes = await twoNodesThroughProxy(10);
    const { server, proxy, publisher, heard } = nodes;
    try {
      const published: StoredEvent[] = [];
      // The other node has read the batch's entry and asked for its events: that request is held
      // while the next batch, larger than history, pushes the first one out.
      for (let attempt = 1; ; attempt++) {
        await waitFor("the other node's reader to wait on the stream", async () =>
          String(await redisCall(server.port, "CLIENT", "LIST")).includes("cmd=xread"),
        );
        proxy.freeze("requests");
        const batch = await publisher.publishBatch(batchOf(published.length, 20));
        published.push(...batch.map((r) => r.event));
        const held = await waitFor("the reader's next request", () => proxy.heldRequests().match(/mget|xread/i)?.[0]);
        if (held.toLowerCase() === "mget") break;
        // Its XREAD had timed out just before: the entry was not read yet; try again.
        proxy.thaw();
        await waitFor("delivery", () => heard.seen.length === published.length);
        if (attempt === 3) throw new Error("the reader never had an entry in hand");
      }
      await pastMillisecondOf(published.at(-1)?.id as string, server.url);
      published.push(...(await publisher.publishBatch(batchOf(published.length, 20))).map((r) => r.event));
      expect(await redisCall(server.port, "XLEN", "h:events")).toBe(1);
      proxy.thaw();
      await waitFor("every delivery", () => heard.seen.length >= published.length);
      expect(heard.gaps).toBe(0);
      expect(heard.seen).toEqual(published);
    } finally {
      await nodes.close();
    }
  });

  it("frees the events of batches that leave history together, however many, and with an age limit without any later publish", async () => {
    const { broker, prefix } = await connect(300);
    const packKey = async (sid: string, of = prefix) => {
      const [[, fields]] = (await redis.xrange(`${of}:events`, sid, sid)) as [[string, string[]]];
      return `${of}:pack:${drawnKeyOf(fields)}`;
    };
    const packs: string[] = [];
    for (let b = 0; b < 150; b++)
      packs.push(await packKey((await broker.publishBatch(batchOf(2 * b, 2)))[0]?.event.id as string));
    await pastMillisecondOf((await redis.xrevrange(`${prefix}:events`, "+", "-", "COUNT", 1))[0]?.[0] as string);
    // One batch as large as history pushes all 150 out at once.
    await broker.publishBatch(batchOf(300, 300));
    expect(await redis.xlen(`${prefix}:events`)).toBe(1);
    for (const key of packs) expect(await redis.pttl(key)).toBeGreaterThan(0);

    // With HISTORY_TTL_S, a pack expires with its events (and the grace), published after or not.
    const aging = uniquePrefix();
    prefixes.push(aging);
    const withTtl = await RedisBroker.connect({
      url: REDIS_URL,
      prefix: aging,
      historySize: 1_000,
      historyTtlS: 1,
      log: silentLogger,
    });
    open.push(withTtl);
    await withTtl.publishBatch(batchOf(0, 3));
    const [[sid]] = (await redis.xrange(`${aging}:events`, "-", "+")) as [[string, string[]]];
    const ttl = await redis.pttl(await packKey(sid, aging));
    expect(ttl).toBeGreaterThan(10_000);
    expect(ttl).toBeLessThanOrEqual(11_000);
  });

  it("reaches a reader that lagged behind many large batches, whose events it fetches a page (10,000) at a time", async () => {
    const nodes = await twoNodesThroughProxy(100_000);
    const { server, proxy, publisher, heard } = nodes;
    try {
      await redisCall(server.port, "CONFIG", "RESETSTAT");
      // The other node hears nothing while 25 batches of 1,000 are published: then it reads them all at once.
      proxy.freeze();
      const published: StoredEvent[] = [];
      for (let b = 0; b < 25; b++) {
        published.push(...(await publisher.publishBatch(batchOf(b * 1_000, 1_000))).map((r) => r.event));
      }
      proxy.thaw();
      await waitFor("every delivery", () => heard.seen.length >= published.length);
      expect(heard.gaps).toBe(0);
      expect(heard.seen).toEqual(published);
      // At most 10,000 events' packs per MGET: 3 for the 24 or 25 batches the reader found waiting.
      const stats = String(await redisCall(server.port, "INFO", "commandstats"));
      expect(Number(/cmdstat_mget:calls=(\d+)/.exec(stats)?.[1])).toBeGreaterThanOrEqual(3);
    } finally {
      await nodes.close();
    }
  });

  it("refuses a retry, and fails a replay, when its events are missing from Redis (evicted), rather than store a duplicate", async () => {
    const { broker, prefix } = await connect(1_000);
    await broker.publishBatch(batchOf(1, 3));
    const [[, fields]] = (await redis.xrange(`${prefix}:events`, "-", "+")) as [[string, string[]]];
    const key = drawnKeyOf(fields);
    await redis.del(`${prefix}:pack:${key}`);
    await expect(broker.publish({ topic: "t", data: "1", id: `${key}.0` })).rejects.toMatchObject({
      code: "HERALD_ID_RETIRED",
    });
    await expect(broker.read(BEFORE_FIRST_POS, 10)).rejects.toThrow(/noeviction/);
    expect(await redis.xlen(`${prefix}:events`)).toBe(1);
  });

  it("publishes after Redis has lost its scripts (SCRIPT FLUSH, or a restart without them)", async () => {
    const server = await startRedisServer(false);
    try {
      const broker = await RedisBroker.connect({ url: server.url, prefix: "h", historySize: 100, log: silentLogger });
      open.push(broker);
      await broker.publishBatch(batchOf(1, 3));
      expect(await redisCall(server.port, "SCRIPT", "FLUSH")).toBe("OK");
      await broker.publishBatch(batchOf(4, 3));
      await broker.publish({ topic: "t", data: "7" });
      expect(datas(await broker.read(BEFORE_FIRST_POS, 10))).toEqual(range(1, 7));
    } finally {
      await Promise.all(open.splice(0).map((b) => b.close()));
      await server.kill();
    }
  });

  it("reaches every listener in order, as a reader on another connection sees it, with no gap reported", async () => {
    const { broker, prefix } = await connect(10_000);
    const { broker: other } = await connect(10_000, prefix);
    const heard = await listen(other);
    const published: StoredEvent[] = [];
    for (let round = 0; round < 5; round++) {
      published.push(...(await broker.publishBatch(batchOf(round * 100, 99))).map((r) => r.event));
      published.push((await broker.publish({ topic: "t", data: `${round * 100 + 99}` })).event);
    }
    await waitFor("every delivery", () => heard.seen.length >= 500);
    expect(heard.seen).toEqual(published);
    expect(heard.gaps).toBe(0);
  });

  it("leaves history whole: trimming keeps the newest HISTORY_SIZE events and the rest of the batch that holds the oldest", async () => {
    const { broker } = await connect(10);
    const history = async () => datas(await broker.read(BEFORE_FIRST_POS, 100));
    await broker.publishBatch(batchOf(1, 8));
    await broker.publishBatch(batchOf(9, 8));
    // The newest 10 start inside the first batch (at 7): it stays whole.
    expect(await history()).toEqual(range(1, 16));
    await broker.publish({ topic: "t", data: "17" });
    expect(await history()).toEqual(range(1, 17));
    await broker.publish({ topic: "t", data: "18" });
    // The newest 10 start at 9: the first batch has left.
    expect(await history()).toEqual(range(9, 18));
    for (let n = 19; n <= 22; n++) await broker.publish({ topic: "t", data: `${n}` });
    expect(await history()).toEqual(range(9, 22));
    // Single events before a batch are trimmed one by one, exactly, as before.
    await broker.publish({ topic: "t", data: "23" });
    await broker.publishBatch(batchOf(24, 3));
    expect(await history()).toEqual(range(17, 26));
    const { head } = await broker.locate(EARLIEST_ID);
    expect(head?.id).toBe((await broker.read(BEFORE_FIRST_POS, 100)).at(-1)?.id);
  });
});
