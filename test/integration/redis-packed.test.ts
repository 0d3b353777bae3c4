import { Redis } from "ioredis";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import type { StoredEvent } from "../../src/broker/broker.js";
import { BEFORE_FIRST_POS, EARLIEST_ID } from "../../src/broker/broker.js";
import { RedisBroker } from "../../src/broker/redis-broker.js";
import { deleteKeys, REDIS_URL, uniquePrefix } from "../helpers/redis.js";
import { silentLogger } from "../helpers/server.js";
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
  });

  it("reaches every listener in order, as a reader on another connection sees it, with no gap reported", async () => {
    const { broker, prefix } = await connect(10_000);
    const { broker: other } = await connect(10_000, prefix);
    const seen: StoredEvent[] = [];
    let gaps = 0;
    await other.subscribe(
      (e) => seen.push(e),
      () => gaps++,
    );
    const published: StoredEvent[] = [];
    for (let round = 0; round < 5; round++) {
      published.push(...(await broker.publishBatch(batchOf(round * 100, 99))).map((r) => r.event));
      published.push((await broker.publish({ topic: "t", data: `${round * 100 + 99}` })).event);
    }
    await waitFor("every delivery", () => seen.length >= 500);
    expect(seen).toEqual(published);
    expect(gaps).toBe(0);
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
