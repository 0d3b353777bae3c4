import { Redis } from "ioredis";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import type { EventInput } from "../../src/broker/broker.js";
import { RedisBroker } from "../../src/broker/redis-broker.js";
import { deleteKeys, pastMillisecondOf, REDIS_URL, uniquePrefix } from "../helpers/redis.js";
import { silentLogger, startServer, type TestServer } from "../helpers/server.js";
import { startTcpProxy, type TcpProxy } from "../helpers/tcp-proxy.js";
import { waitFor } from "../helpers/wait.js";

// Retrying a publish whose outcome is unknown, for events published without an id: Redis keeps one
// key per publish for them (not one per event), and the retry ids Herald hands out must still make
// each retry safe. The first try goes through a TCP proxy that freezes, as a dead link would.
const REDIS_PORT = Number(new URL(REDIS_URL).port || 6379);
const prefixes: string[] = [];
const open: { close(): Promise<void> }[] = [];
const proxies: TcpProxy[] = [];
const redis = new Redis(REDIS_URL);
afterEach(async () => {
  await Promise.all(open.splice(0).map((o) => o.close()));
  await Promise.all(proxies.splice(0).map((p) => p.close()));
});
afterAll(async () => {
  await Promise.all(prefixes.map((prefix) => deleteKeys(prefix)));
  redis.disconnect();
});

function newPrefix(): string {
  const prefix = uniquePrefix();
  prefixes.push(prefix);
  return prefix;
}

async function connect(prefix: string, historySize: number, url = REDIS_URL): Promise<RedisBroker> {
  const broker = await RedisBroker.connect({ url, prefix, historySize, log: silentLogger });
  open.push(broker);
  return broker;
}

/**
 * The events in the stream, read straight from Redis: an entry is one event, or stands for a
 * publish's events without publisher id, packed in the key `<prefix>:pack:<k>` (their ids follow
 * the entry's, one apart).
 */
async function history(prefix: string): Promise<{ id: string; data: string }[]> {
  const events: { id: string; data: string }[] = [];
  for (const [sid, fields] of await redis.xrange(`${prefix}:events`, "-", "+")) {
    const field = (name: string) => fields[fields.indexOf(name) + 1] as string;
    if (!fields.includes("k")) {
      events.push({ id: sid, data: field("d") });
      continue;
    }
    const [ms, seq] = sid.split("-");
    const items = JSON.parse((await redis.get(`${prefix}:pack:${field("k")}`)) as string) as { d: string }[];
    events.push(...items.map((item, k) => ({ id: `${ms}-${Number(seq) + k}`, data: item.d })));
  }
  return events;
}

interface Caught {
  /** `publishIds` of a batch, or `[publishId]` of a single event. */
  ids: string[];
  /** What history held before the caught publish. */
  before: number;
}

/** How a test publishes its events: as one batch, or each with `publish`, all in one turn. */
type How = "batch" | "singles";

/** Publishes `inputs` as `how` says and returns the ids of its `PublishOutcomeUnknownError`s, in order. */
async function publishUnknown(node: RedisBroker, inputs: EventInput[], how: How): Promise<string[]> {
  const errors = (await Promise.all(
    (how === "batch" ? [node.publishBatch(inputs)] : inputs.map((input) => node.publish(input))).map((publishing) =>
      publishing.then(
        () => new Error("the publish was answered through a frozen link"),
        (err: unknown) => err,
      ),
    ),
  )) as { code?: string; publishIds?: string[]; publishId?: string }[];
  for (const error of errors) expect(error).toMatchObject({ code: "HERALD_PUBLISH_OUTCOME_UNKNOWN" });
  const ids = how === "batch" ? (errors[0]?.publishIds as string[]) : errors.map((error) => error.publishId as string);
  expect(ids).toHaveLength(inputs.length);
  // Singles of one turn went to Redis in one call: they share the key it drew, each its own place.
  if (how === "singles") expect(ids).toEqual(ids.map((_, j) => `${ids[0]?.split(".")[0]}.${j}`));
  return ids;
}

/**
 * A broker whose link to Redis goes through a proxy, frozen once "before" is stored (the script is
 * then loaded and the link known to answer), as a dead link would be.
 */
async function frozenNode(prefix: string, historySize: number) {
  const proxy = await startTcpProxy(REDIS_PORT);
  proxies.push(proxy);
  const node = await connect(prefix, historySize, proxy.url);
  await node.publish({ topic: "t", data: "before" });
  proxy.freeze();
  return { proxy, node };
}

/** Thaws the link: what it held reaches Redis first, then "after", once the node has reconnected. */
async function thawThenPublishAfter(proxy: TcpProxy, node: RedisBroker): Promise<void> {
  proxy.thaw();
  await waitFor(
    "the node to publish again",
    () =>
      node.publish({ topic: "t", data: "after" }).then(
        () => true,
        () => false,
      ),
    10_000,
  );
}

/**
 * Publishes `inputs` on a broker whose link to Redis freezes first, and returns the ids of its
 * `PublishOutcomeUnknownError`s. `reached`: the frozen link then delivers the publish, and Redis
 * stores it (the answer was lost); else the link dies with it and it never reaches Redis.
 */
async function caught(prefix: string, historySize: number, inputs: EventInput[], reached: boolean, how: How) {
  const { proxy, node } = await frozenNode(prefix, historySize);
  const before = await redis.xlen(`${prefix}:events`);
  const ids = await publishUnknown(node, inputs, how);
  if (reached) {
    proxy.thaw();
    await waitFor("Redis to run the caught publish", async () => (await redis.xlen(`${prefix}:events`)) > before);
  } else {
    await proxy.close();
  }
  return { ids, before } satisfies Caught;
}

const withIds = (inputs: EventInput[], ids: string[]) => inputs.map((input, i) => ({ ...input, id: ids[i] }));
const datas = (events: readonly { data: string }[]) => events.map((e) => e.data);

describe("Redis: retrying a publish whose outcome is unknown, with the ids of its error", () => {
  const idless: EventInput[] = Array.from({ length: 5 }, (_, i) => ({ topic: "t", data: `e${i}` }));
  const mixed: EventInput[] = [
    { topic: "t", data: "m0" },
    { topic: "t", data: "m1", id: "own-1" },
    { topic: "u", data: "m2", event: "tick" },
    { topic: "t", data: "m3", id: "own-3", retry: 100 },
    { topic: "t", data: "m4", private: true },
  ];
  // Every optional field, on events that Redis packs into one entry (compared field by field on a retry).
  const dressed: EventInput[] = [
    { topic: "t", data: "d0", event: "tick", retry: 250 },
    { topic: "u", data: "d1\nline 2", private: true, alternates: ["v", "w"] },
    { topic: "t", data: "d2 ✓" },
  ];
  // Single events without id published in one turn go to Redis together, yet fail each on its own.
  const cases: [string, EventInput[], How][] = [
    ["a batch without ids", idless, "batch"],
    ["a batch without ids, with every optional field", dressed, "batch"],
    ["a batch mixing publisher ids and events without", mixed, "batch"],
    ["a single event without id", [{ topic: "t", data: "solo" }], "singles"],
    ["single events without id published in one turn, with every optional field", dressed, "singles"],
  ];

  it.each(cases)(
    "%s that reached Redis: the retry stores nothing and answers the original events",
    async (_what, inputs, how) => {
      const prefix = newPrefix();
      const { ids } = await caught(prefix, 100, inputs, true, how);
      // The publisher's own ids are the ids to retry with; the others are distinct.
      for (const [i, input] of inputs.entries()) if (input.id !== undefined) expect(ids[i]).toBe(input.id);
      expect(new Set(ids).size).toBe(ids.length);
      const retrier = await connect(prefix, 100);
      const stored = (await retrier.read("", 100)).slice(1);
      expect(datas(stored)).toEqual(datas(inputs));
      const retried = await retrier.publishBatch(withIds(inputs, ids));
      expect(retried.map((r) => r.duplicate)).toEqual(inputs.map(() => true));
      expect(retried.map((r) => r.event)).toEqual(stored);
      // Events without a publisher's id keep the ids Redis gave them.
      for (const [i, input] of inputs.entries()) expect(stored[i]?.id === ids[i]).toBe(input.id !== undefined);
      // And once more: still nothing new.
      expect((await retrier.publishBatch(withIds(inputs, ids))).every((r) => r.duplicate)).toBe(true);
      expect(datas(await retrier.read("", 100))).toEqual(["before", ...datas(inputs)]);
    },
    20_000,
  );

  it.each(cases)(
    "%s that never reached Redis: the retry stores each event once, under its retry id",
    async (_what, inputs, how) => {
      const prefix = newPrefix();
      const { ids } = await caught(prefix, 100, inputs, false, how);
      const retrier = await connect(prefix, 100);
      expect(datas(await retrier.read("", 100))).toEqual(["before"]);
      const retried = await retrier.publishBatch(withIds(inputs, ids));
      expect(retried.map((r) => [r.duplicate, r.event.id])).toEqual(ids.map((id) => [false, id]));
      const again = await retrier.publishBatch(withIds(inputs, ids));
      expect(again.map((r) => r.duplicate)).toEqual(inputs.map(() => true));
      expect(again.map((r) => r.event)).toEqual(retried.map((r) => r.event));
      // The retry may also come one event at a time.
      for (const [i, input] of withIds(inputs, ids).entries()) {
        expect((await retrier.publish(input)).event).toEqual(retried[i]?.event);
      }
      const history = await retrier.read("", 100);
      expect(datas(history)).toEqual(["before", ...datas(inputs)]);
      expect(history.slice(1).map((e) => e.id)).toEqual(ids);
    },
    20_000,
  );

  it.each(cases.filter(([, inputs]) => inputs.length > 1))(
    "%s whose retry reached Redis first, the first try later (held in a link that came back): each stored once",
    async (_what, inputs, how) => {
      const prefix = newPrefix();
      const { proxy, node } = await frozenNode(prefix, 100);
      const ids = await publishUnknown(node, inputs, how);
      const retrier = await connect(prefix, 100);
      const retried = await retrier.publishBatch(withIds(inputs, ids));
      expect(retried.map((r) => [r.duplicate, r.event.id])).toEqual(ids.map((id) => [false, id]));
      // The first try reaches Redis now, before anything the node sends once it has reconnected.
      await thawThenPublishAfter(proxy, node);
      expect(datas(await retrier.read("", 100))).toEqual(["before", ...datas(inputs), "after"]);
      expect((await retrier.publishBatch(withIds(inputs, ids))).map((r) => r.event)).toEqual(
        retried.map((r) => r.event),
      );
    },
    20_000,
  );

  it("refuses a retry whose events left history with 409 HERALD_ID_RETIRED, and stores nothing", async () => {
    const prefix = newPrefix();
    const proxy = await startTcpProxy(REDIS_PORT);
    proxies.push(proxy);
    const settings = { broker: "redis" as const, redisPrefix: prefix, historySize: 3 };
    const first: TestServer = await startServer({ ...settings, redisUrl: proxy.url });
    open.push(first);
    const batch = [1, 2, 3].map((n) => ({ topic: "t", data: `b${n}` }));
    await first.publish({ topic: "t", data: "before" });
    proxy.freeze();
    const answer = await first.app.inject({ method: "POST", url: "/events", payload: batch });
    expect(answer.statusCode).toBe(503);
    const ids = answer.json<{ code: string; ids: string[] }>().ids;
    expect(answer.json()).toMatchObject({
      code: "HERALD_PUBLISH_OUTCOME_UNKNOWN",
      ids: [expect.any(String), expect.any(String), expect.any(String)],
    });
    proxy.thaw();
    await waitFor("Redis to run the caught batch", async () => (await history(prefix)).length === 3);

    const other: TestServer = await startServer({ ...settings, redisUrl: REDIS_URL });
    open.push(other);
    const retry = (payload: object) => other.app.inject({ method: "POST", url: "/events", payload });
    // Still in history: the retry is the batch.
    const same = await retry(withIds(batch, ids));
    expect(same.statusCode).toBe(201);
    const stored = (await history(prefix)).map(({ id }) => [id, true]);
    expect(same.json<{ id: string; duplicate: boolean }[]>().map((r) => [r.id, r.duplicate])).toEqual(stored);
    // A batch without ids leaves history whole: with its first event older than the newest 3, the
    // retry is still the batch.
    await other.publish({ topic: "t", data: "after 1" });
    expect((await retry(withIds(batch, ids))).json<{ id: string }[]>().map((r) => [r.id, true])).toEqual(stored);
    // Once it has left, a retry is refused (whichever event it names), never stored twice.
    await other.publish({ topic: "t", data: "after 2" });
    await other.publish({ topic: "t", data: "after 3" });
    for (const [i, event] of withIds(batch, ids).entries()) {
      const refused = await retry(event);
      expect([refused.statusCode, refused.json().code, i]).toEqual([409, "HERALD_ID_RETIRED", i]);
    }
    const refused = await retry(withIds(batch, ids));
    expect(refused.statusCode).toBe(409);
    expect(refused.json()).toMatchObject({ code: "HERALD_ID_RETIRED", message: expect.stringMatching(/^item 0: /) });
    expect((await history(prefix)).map(({ data }) => data)).toEqual(["after 1", "after 2", "after 3"]);
  }, 20_000);
});

describe("Redis: retry ids from a version that drew one key per event", () => {
  it("still find their event, and leave history as before", async () => {
    const prefix = newPrefix();
    // What that version wrote for an event without id: the entry, and its drawn UUID mapped and timed.
    const key = "3f0c6a4e-8b9d-4c1e-9f2a-7d5e3b1c0a98";
    const sid = await redis.xadd(`${prefix}:events`, "*", "t", "t", "d", "old", "n", "1");
    await redis.set(`${prefix}:seq`, "1");
    await redis.hset(`${prefix}:ids`, key, sid as string);
    await redis.zadd(`${prefix}:id-times`, (sid as string).split("-")[0] as string, key);
    const broker = await connect(prefix, 2);
    expect(await broker.publish({ topic: "t", data: "old", id: key })).toMatchObject({
      duplicate: true,
      event: { id: sid, data: "old" },
    });
    await broker.publishBatch([
      { topic: "t", data: "1" },
      { topic: "t", data: "2" },
    ]);
    await expect(broker.publish({ topic: "t", data: "old", id: key })).rejects.toMatchObject({
      code: "HERALD_ID_RETIRED",
    });
  });
});

describe("Redis: ids of the retry form chosen by a publisher", () => {
  it("are ordinary ids when no publish drew their key: stored, then idempotent", async () => {
    const prefix = newPrefix();
    const broker = await connect(prefix, 100);
    const { event } = await broker.publish({ topic: "t", data: "x" });
    // Of the retry form, its key even a stream id of this history: still the publisher's own id.
    for (const id of [`${event.id}.0`, "12-34.0", "12-34.1", "order.7"]) {
      const stored = await broker.publish({ topic: "t", data: id, id });
      expect(stored).toMatchObject({ duplicate: false, event: { id, data: id } });
      expect(await broker.publish({ topic: "t", data: id, id })).toEqual({ ...stored, duplicate: true });
      await expect(broker.publish({ topic: "t", data: "other", id })).rejects.toMatchObject({
        code: "HERALD_ID_CONFLICT",
      });
      expect((await broker.locate(id)).found).toBe(true);
    }
    expect(datas(await broker.read("", 100))).toEqual(["x", `${event.id}.0`, "12-34.0", "12-34.1", "order.7"]);
  });
});

describe("Redis: bookkeeping for events without publisher id", () => {
  it("keeps one key per publish, not one per event, and retires it when its last event leaves", async () => {
    const prefix = newPrefix();
    const broker = await connect(prefix, 150);
    const batch = Array.from({ length: 100 }, (_, i) => ({ topic: "t", data: `${i}` }));
    const results = await broker.publishBatch(batch);
    expect(await redis.hlen(`${prefix}:ids`)).toBe(1);
    expect(await redis.zcard(`${prefix}:id-times`)).toBe(1);
    const [key] = await redis.hkeys(`${prefix}:ids`);
    // The key is never an event's id: resuming from it is a reset, not a replay.
    expect((await broker.locate(key as string)).found).toBe(false);
    // Found again through the key: the 43rd event without id.
    expect(await broker.publish({ topic: "t", data: "42", id: `${key}.42` })).toEqual({
      event: results[42]?.event,
      duplicate: true,
    });
    // Beyond the publish's events: an ordinary new id.
    expect(await broker.publish({ topic: "t", data: "new", id: `${key}.100` })).toMatchObject({
      duplicate: false,
      event: { id: `${key}.100` },
    });
    // A second publish without ids adds one key; events with the publisher's ids one each, as before.
    await broker.publishBatch([...batch.slice(0, 49), { topic: "t", data: "own", id: "own" }]);
    expect(await redis.hlen(`${prefix}:ids`)).toBe(4);
    // 151 events: the first batch's first event is older than the newest 150, but the batch stays
    // whole (it is one entry), and so do its retry ids.
    expect(await broker.publish({ topic: "t", data: "99", id: `${key}.99` })).toEqual({
      event: results[99]?.event,
      duplicate: true,
    });
    expect(await redis.hexists(`${prefix}:ids`, key as string)).toBe(1);
    // The key retires once history starts after its last event's millisecond (ids are `<ms>-<n>`).
    await pastMillisecondOf(results[99]?.event.id as string);
    await broker.publishBatch([...batch, ...batch.slice(0, 50)]);
    expect(await redis.hexists(`${prefix}:ids`, key as string)).toBe(0);
    expect(await redis.zscore(`${prefix}:retired`, key as string)).not.toBeNull();
    await expect(broker.publish({ topic: "t", data: "0", id: `${key}.0` })).rejects.toMatchObject({
      code: "HERALD_ID_RETIRED",
    });
  });
});

describe("Redis: single events without publisher id published in one turn", () => {
  it("share one script call, each its own entry and id, stored and delivered in call order", async () => {
    const prefix = newPrefix();
    const broker = await connect(prefix, 100);
    const delivered: string[] = [];
    await broker.subscribe((event) => delivered.push(event.data));
    const inputs = Array.from({ length: 5 }, (_, i) => ({ topic: "t", data: `e${i}`, ...(i === 2 && { event: "x" }) }));
    const results = await Promise.all(inputs.map((input) => broker.publish(input)));
    // One call draws one key for its events without id: five calls would have drawn five.
    expect(await redis.hlen(`${prefix}:ids`)).toBe(1);
    // An entry each, as a node of an earlier version reads them.
    expect(await redis.xlen(`${prefix}:events`)).toBe(5);
    expect(results.map((r) => [r.duplicate, r.event.data, r.event.event])).toEqual(
      inputs.map((input) => [false, input.data, input.event]),
    );
    expect(new Set(results.map((r) => r.event.id)).size).toBe(5);
    await waitFor("the events to reach the subscriber", () => delivered.length === 5);
    expect(delivered).toEqual(datas(inputs));
    expect((await broker.read("", 100)).map((e) => e.id)).toEqual(results.map((r) => r.event.id));
  });

  it("whose first try reaches Redis after one caller's retry: the others' events are stored all the same", async () => {
    const prefix = newPrefix();
    const { proxy, node } = await frozenNode(prefix, 100);
    const inputs = ["s0", "s1", "s2"].map((data) => ({ topic: "t", data }));
    const ids = await publishUnknown(node, inputs, "singles");
    // Only the first caller retries, and its retry reaches Redis first.
    const retrier = await connect(prefix, 100);
    expect(await retrier.publish({ ...inputs[0], id: ids[0] } as EventInput)).toMatchObject({
      duplicate: false,
      event: { id: ids[0], data: "s0" },
    });
    await thawThenPublishAfter(proxy, node);
    expect(datas(await retrier.read("", 100))).toEqual(["before", "s0", "s1", "s2", "after"]);
    // The callers that retry later find their events, stored once.
    for (const j of [1, 2]) {
      expect(await retrier.publish({ ...inputs[j], id: ids[j] } as EventInput)).toMatchObject({ duplicate: true });
    }
    expect(datas(await retrier.read("", 100))).toEqual(["before", "s0", "s1", "s2", "after"]);
  }, 20_000);

  it("go 1,000 to a call at most", async () => {
    const prefix = newPrefix();
    const broker = await connect(prefix, 2_000);
    const results = await Promise.all(
      Array.from({ length: 1_001 }, (_, i) => broker.publish({ topic: "t", data: `${i}` })),
    );
    expect(await redis.hlen(`${prefix}:ids`)).toBe(2);
    expect(datas((await broker.read("", 2_000)).slice(999))).toEqual(["999", "1000"]);
    expect(results.at(-1)?.event.data).toBe("1000");
  });

  it("are sent when the broker closes in the same turn", async () => {
    const prefix = newPrefix();
    const broker = await RedisBroker.connect({ url: REDIS_URL, prefix, historySize: 100, log: silentLogger });
    const publishing = ["a", "b"].map((data) => broker.publish({ topic: "t", data }));
    await broker.close();
    expect((await Promise.all(publishing)).map((r) => r.event.data)).toEqual(["a", "b"]);
  });

  it("go to Redis before a publish with an id or a batch that follows them in the same turn", async () => {
    const prefix = newPrefix();
    const broker = await connect(prefix, 100);
    await Promise.all([
      broker.publish({ topic: "t", data: "1" }),
      broker.publish({ topic: "t", data: "2" }),
      broker.publish({ topic: "t", data: "3", id: "own" }),
      broker.publish({ topic: "t", data: "4" }),
      broker.publishBatch([
        { topic: "t", data: "5" },
        { topic: "t", data: "6" },
      ]),
      broker.publish({ topic: "t", data: "7" }),
    ]);
    expect(datas(await broker.read("", 100))).toEqual(["1", "2", "3", "4", "5", "6", "7"]);
  });
});

describe("Redis: single publishes retire keys in bulk, once per 16 events", () => {
  it("forget the keys of the events that left history, and keep those in it", async () => {
    const prefix = newPrefix();
    const broker = await connect(prefix, 50);
    const first = [];
    for (let i = 0; i < 200; i++) first.push(await broker.publish({ topic: "t", data: `old ${i}` }));
    // Retired by time: the next events are in a later millisecond than all of these.
    await pastMillisecondOf(first.at(-1)?.event.id as string);
    // Up to event 256, a multiple of 16: its publish retires keys. History then holds events 207 to 256.
    for (let i = 0; i < 56; i++) await broker.publish({ topic: "t", data: `new ${i}` });
    // One key per publish without id. The 50 in history stay; the 200 older ones are retired; of
    // events 201 to 206, those in the millisecond of event 207 stay too (keys retire by time).
    const kept = await redis.hlen(`${prefix}:ids`);
    expect(kept).toBeGreaterThanOrEqual(50);
    expect(kept).toBeLessThanOrEqual(56);
    expect(await redis.zcard(`${prefix}:id-times`)).toBe(kept);
    expect(await redis.zcard(`${prefix}:retired`)).toBe(256 - kept);
  });

  it("refuse an id whose event left history before its key retired, and do not resume from it", async () => {
    const prefix = newPrefix();
    const broker = await connect(prefix, 3);
    await broker.publish({ topic: "t", data: "a", id: "a" });
    for (const id of ["b", "c", "d"]) await broker.publish({ topic: "t", data: id, id });
    // Event 1 has left history; no publish since it did has retired keys (the next is at event 16).
    expect(await redis.hexists(`${prefix}:ids`, "a")).toBe(1);
    await expect(broker.publish({ topic: "t", data: "a", id: "a" })).rejects.toMatchObject({
      code: "HERALD_ID_RETIRED",
    });
    expect((await broker.locate("a")).found).toBe(false);
    expect((await broker.locate("b")).found).toBe(true);
  });
});
