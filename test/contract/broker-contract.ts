import { afterEach, describe, expect, it } from "vitest";
import {
  BEFORE_FIRST_POS,
  type Broker,
  EARLIEST_ID,
  type EventInput,
  type StoredEvent,
} from "../../src/broker/broker.js";
import { waitFor } from "../helpers/wait.js";

/** Makes a fresh, empty broker whose history keeps `historySize` events, for at most `historyTtlS` seconds. */
export type BrokerFactory = (options: { historySize: number; historyTtlS?: number }) => Promise<Broker>;

/** `locate` then one `read` page: the events after `id`, with what `locate` said. */
async function eventsAfter(broker: Broker, id: string, limit: number) {
  const location = await broker.locate(id);
  const events = location.found ? await broker.read(location.pos ?? "", limit) : [];
  return { ...location, events, afterPos: location.pos };
}

/** The behaviour every `Broker` engine must have. Call from one test file per engine. */
export function describeBrokerContract(name: string, create: BrokerFactory): void {
  describe(`${name} keeps the Broker contract`, () => {
    const open: Broker[] = [];
    const make = async (historySize = 100, historyTtlS = 0) => {
      const broker = await create({ historySize, historyTtlS });
      open.push(broker);
      return broker;
    };
    afterEach(async () => {
      await Promise.all(open.splice(0).map((b) => b.close()));
    });

    it("assigns distinct ids and delivers to listeners in publish order", async () => {
      const broker = await make();
      const seen: StoredEvent[] = [];
      await broker.subscribe((e) => seen.push(e));
      const published = [];
      for (let i = 0; i < 20; i++) published.push((await broker.publish({ topic: `t${i % 3}`, data: `${i}` })).event);
      expect(new Set(published.map((e) => e.id)).size).toBe(20);
      await waitFor("every delivery", () => seen.length >= 20);
      expect(seen.map((e) => e.id)).toEqual(published.map((e) => e.id));
      expect(seen.map((e) => e.data)).toEqual(published.map((_, i) => `${i}`));
    });

    it("keeps concurrent publishes in one order: history order equals delivery order", async () => {
      const broker = await make(1_000);
      const seen: string[] = [];
      await broker.subscribe((e) => seen.push(e.id));
      const first = await broker.publish({ topic: "a", data: "start" });
      const results = await Promise.all(
        Array.from({ length: 200 }, (_, i) => broker.publish({ topic: i % 2 ? "a" : "b", data: `${i}` })),
      );
      await waitFor("every delivery", () => seen.length >= 201);
      const { events, afterPos } = await eventsAfter(broker, first.event.id, 1_000);
      expect(events.map((e) => e.id)).toEqual(seen.slice(1));
      // Positions follow history order, starting after the position of the id asked for.
      const positions = [afterPos, ...events.map((e) => e.pos)];
      for (let i = 1; i < positions.length; i++)
        expect((positions[i] as string) > (positions[i - 1] as string)).toBe(true);
      expect(new Set(results.map((r) => r.event.id)).size).toBe(200);
    });

    it("reads history in pages by position, every topic, oldest first", async () => {
      const broker = await make();
      const ids: string[] = [];
      for (const topic of ["a", "b", "a", "c", "a", "b"])
        ids.push((await broker.publish({ topic, data: topic })).event.id);
      const location = await broker.locate(ids[1] as string);
      expect(location).toMatchObject({ found: true, head: { id: ids[5] } });
      const first = await broker.read(location.pos as string, 2);
      expect(first.map((e) => e.id)).toEqual([ids[2], ids[3]]);
      const second = await broker.read(first.at(-1)?.pos as string, 2);
      expect(second.map((e) => [e.id, e.topic])).toEqual([
        [ids[4], "a"],
        [ids[5], "b"],
      ]);
      expect(location.head?.pos).toBe(second.at(-1)?.pos);
      expect(await broker.read(second.at(-1)?.pos as string, 2)).toEqual([]);
    });

    it("locates earliest before the first event, on an empty history too", async () => {
      const broker = await make(3);
      expect(await broker.locate(EARLIEST_ID)).toEqual({ found: true, pos: BEFORE_FIRST_POS, head: undefined });
      expect(await broker.read(BEFORE_FIRST_POS, 10)).toEqual([]);
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push((await broker.publish({ topic: "a", data: `${i}` })).event.id);
      const location = await broker.locate(EARLIEST_ID);
      expect(location).toMatchObject({ found: true, pos: BEFORE_FIRST_POS, head: { id: ids[4] } });
      expect((await broker.read(BEFORE_FIRST_POS, 10)).map((e) => e.id)).toEqual(ids.slice(2));
    });

    it("reports found: false for an id that left history or was never issued", async () => {
      const broker = await make(3);
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push((await broker.publish({ topic: "a", data: `${i}` })).event.id);
      expect(await eventsAfter(broker, ids[0] as string, 10)).toMatchObject({ found: false, events: [] });
      expect(await eventsAfter(broker, "never-issued", 10)).toMatchObject({ found: false, head: { id: ids[4] } });
      // Shaped like a Redis stream id, but beyond its 64-bit range.
      expect(await eventsAfter(broker, "99999999999999999999999-0", 10)).toMatchObject({ found: false });
      expect((await eventsAfter(broker, ids[2] as string, 10)).events.map((e) => e.id)).toEqual([ids[3], ids[4]]);
    });

    it("refuses an id that left history to a new event, so a resume from it is a reset", async () => {
      const broker = await make(3);
      const assigned = await broker.publish({ topic: "a", data: "w" });
      await broker.publish({ topic: "a", data: "x", id: "reused" });
      for (let i = 0; i < 3; i++) await broker.publish({ topic: "a", data: `${i}` });
      expect((await broker.locate("reused")).found).toBe(false);
      await expect(broker.publish({ topic: "a", data: "y", id: "reused" })).rejects.toMatchObject({
        code: "HERALD_ID_RETIRED",
        statusCode: 409,
      });
      // A retry of the very same event is refused too: it was stored, and has been delivered.
      await expect(broker.publish({ topic: "a", data: "x", id: "reused" })).rejects.toMatchObject({
        code: "HERALD_ID_RETIRED",
      });
      expect((await broker.locate("reused")).found).toBe(false);
      // An id Herald assigned cannot be taken over either: remembered (409), or of a form
      // publishers may not use at all (Redis stream ids, 400).
      const takeover = await broker.publish({ topic: "a", data: "z", id: assigned.event.id }).catch((err) => err);
      expect([400, 409]).toContain((takeover as { statusCode?: number }).statusCode);
    });

    it("stores a batch in order and adjacent, answers in order, and hands it to listeners in one turn", async () => {
      const broker = await make(2_000);
      const seen: string[] = [];
      let seenAtNextTurn: number | undefined;
      await broker.subscribe((e) => {
        seen.push(e.data);
        if (e.data === "b0") setImmediate(() => (seenAtNextTurn ??= seen.length));
      });
      const first = await broker.publish({ topic: "a", data: "before" });
      // As large as a batch may be by default (MAX_BATCH_EVENTS).
      const batch = Array.from({ length: 1_000 }, (_, i) => ({ topic: i % 2 ? "a" : "b", data: `b${i}` }));
      const [, results] = await Promise.all([
        Promise.all(Array.from({ length: 20 }, (_, i) => broker.publish({ topic: "a", data: `s${i}` }))),
        broker.publishBatch(batch),
      ]);
      expect(results.map((r) => [r.event.data, r.duplicate])).toEqual(batch.map((e) => [e.data, false]));
      expect(new Set(results.map((r) => r.event.id)).size).toBe(1_000);
      await waitFor(
        "every delivery, and the turn after the batch's",
        () => seen.length >= 1_021 && seenAtNextTurn !== undefined,
      );
      const { events } = await eventsAfter(broker, first.event.id, 2_000);
      const history = events.map((e) => e.data);
      expect(history).toEqual(seen.slice(1));
      const start = history.indexOf("b0");
      expect(history.slice(start, start + 1_000)).toEqual(batch.map((e) => e.data));
      expect(events.slice(start, start + 1_000).map((e) => e.id)).toEqual(results.map((r) => r.event.id));
      // Listeners had the whole batch before the next turn of the event loop.
      expect(seen.indexOf("b999")).toBeLessThan(seenAtNextTurn as number);
    });

    it("stores a batch larger than history: the newest events stay, repeats within it are duplicates", async () => {
      const broker = await make(10);
      const batch = Array.from({ length: 25 }, (_, i) => ({ topic: "a", data: `${i}`, id: `x${i}` }));
      const results = await broker.publishBatch([...batch, batch[0] as EventInput, { topic: "a", data: "last" }]);
      expect(results.map((r) => r.duplicate)).toEqual([...batch.map(() => false), true, false]);
      expect(results[25]?.event).toEqual(results[0]?.event);
      const { events, head } = await eventsAfter(broker, EARLIEST_ID, 100);
      expect(events.map((e) => e.data)).toEqual([...batch.slice(16).map((e) => e.data), "last"]);
      expect(head?.id).toBe(results[26]?.event.id);
      // The ids that left history with the batch are retired.
      await expect(broker.publish({ topic: "a", data: "new", id: "x0" })).rejects.toMatchObject({
        code: "HERALD_ID_RETIRED",
      });
    });

    it("refuses a whole batch when one item's id is taken by other content, naming the item", async () => {
      const broker = await make();
      const seen: string[] = [];
      await broker.subscribe((e) => seen.push(e.data));
      const taken = await broker.publish({ topic: "a", data: "x", id: "taken" });
      await expect(
        broker.publishBatch([
          { topic: "a", data: "1" },
          { topic: "a", data: "other", id: "taken" },
          { topic: "a", data: "3", id: "fresh" },
        ]),
      ).rejects.toMatchObject({ code: "HERALD_ID_CONFLICT", index: 1 });
      // Two items of one batch with one id and different content are refused alike.
      await expect(
        broker.publishBatch([
          { topic: "a", data: "1", id: "twice" },
          { topic: "a", data: "2", id: "twice" },
        ]),
      ).rejects.toMatchObject({ code: "HERALD_ID_CONFLICT", index: 1 });
      const after = await broker.publish({ topic: "a", data: "after" });
      expect((await eventsAfter(broker, taken.event.id, 10)).events.map((e) => e.data)).toEqual(["after"]);
      expect((await broker.locate("fresh")).found).toBe(false);
      await waitFor("the last delivery", () => seen.includes("after"));
      expect(seen).toEqual(["x", "after"]);
      expect(after.duplicate).toBe(false);
    });

    it("treats ids per item in a batch: a repeat of history or of an earlier item is a duplicate", async () => {
      const broker = await make();
      const stored = await broker.publish({ topic: "a", data: "x", id: "order-1" });
      const results = await broker.publishBatch([
        { topic: "a", data: "x", id: "order-1" },
        { topic: "a", data: "y", id: "order-2" },
        { topic: "a", data: "y", id: "order-2" },
        { topic: "a", data: "z" },
      ]);
      expect(results.map((r) => [r.event.id, r.event.data, r.duplicate])).toEqual([
        ["order-1", "x", true],
        ["order-2", "y", false],
        ["order-2", "y", true],
        [results[3]?.event.id, "z", false],
      ]);
      expect(results[0]?.event).toEqual(stored.event);
      expect(results[2]?.event).toEqual(results[1]?.event);
      const { events } = await eventsAfter(broker, "order-1", 10);
      expect(events.map((e) => e.data)).toEqual(["y", "z"]);
      // The whole batch again, as a publisher's retry sends it: every item a duplicate, nothing new.
      const retry = await broker.publishBatch([
        { topic: "a", data: "x", id: "order-1" },
        { topic: "a", data: "y", id: "order-2" },
      ]);
      expect(retry.map((r) => r.duplicate)).toEqual([true, true]);
      expect((await broker.locate(EARLIEST_ID)).head?.id).toBe(results[3]?.event.id);
    });

    it("refuses a whole batch that reuses an id that left history", async () => {
      const broker = await make(3);
      await broker.publish({ topic: "a", data: "x", id: "old" });
      for (let i = 0; i < 3; i++) await broker.publish({ topic: "a", data: `${i}` });
      const head = (await broker.locate(EARLIEST_ID)).head;
      await expect(
        broker.publishBatch([
          { topic: "a", data: "new" },
          { topic: "a", data: "x", id: "old" },
        ]),
      ).rejects.toMatchObject({ code: "HERALD_ID_RETIRED", index: 1 });
      expect((await broker.locate(EARLIEST_ID)).head).toEqual(head);
    });

    it("keeps a publisher's id, returns the stored event for an identical re-publish, refuses a different one", async () => {
      const broker = await make();
      const seen: string[] = [];
      await broker.subscribe((e) => seen.push(e.id));
      const first = await broker.publish({ topic: "a", data: "x", id: "order-1", event: "created" });
      expect(first).toMatchObject({ duplicate: false, event: { id: "order-1", data: "x" } });
      const again = await broker.publish({ topic: "a", data: "x", id: "order-1", event: "created" });
      expect(again).toEqual({ duplicate: true, event: first.event });
      await expect(broker.publish({ topic: "a", data: "y", id: "order-1", event: "created" })).rejects.toMatchObject({
        code: "HERALD_ID_CONFLICT",
        statusCode: 409,
      });
      const next = await broker.publish({ topic: "a", data: "z" });
      await waitFor("the next event", () => seen.includes(next.event.id));
      expect(seen).toEqual(["order-1", next.event.id]);
      expect((await eventsAfter(broker, "order-1", 10)).events.map((e) => e.id)).toEqual([next.event.id]);
    });

    it("stores and returns private, and treats a re-publish that differs only in private as a conflict", async () => {
      const broker = await make();
      const seen: StoredEvent[] = [];
      await broker.subscribe((e) => seen.push(e));
      const before = await broker.publish({ topic: "a", data: "public" });
      const secret = await broker.publish({ topic: "a", data: "x", id: "secret-1", private: true });
      expect(secret.event.private).toBe(true);
      await waitFor("the private event's delivery", () => seen.length >= 2);
      expect(seen[1]?.private).toBe(true);
      const { events } = await eventsAfter(broker, before.event.id, 10);
      expect(events.map((e) => [e.id, e.private])).toEqual([["secret-1", true]]);
      expect(await broker.publish({ topic: "a", data: "x", id: "secret-1", private: true })).toEqual({
        duplicate: true,
        event: secret.event,
      });
      await expect(broker.publish({ topic: "a", data: "x", id: "secret-1" })).rejects.toMatchObject({
        code: "HERALD_ID_CONFLICT",
      });
      await broker.publish({ topic: "a", data: "y", id: "public-1" });
      await expect(broker.publish({ topic: "a", data: "y", id: "public-1", private: true })).rejects.toMatchObject({
        code: "HERALD_ID_CONFLICT",
      });
      await waitFor("every delivery", () => seen.length >= 3);
      expect(seen.map((e) => e.id)).toEqual([before.event.id, "secret-1", "public-1"]);
    });

    it("never hands out an id a publisher already chose (or refuses ids of the form it assigns)", async () => {
      const broker = await make();
      const generated = (await broker.publish({ topic: "a", data: "1" })).event.id;
      // The publisher's own event takes the next sequence number, so the one after is the collision.
      const guess = generated.replace(/(\d+)$/, (n) => String(Number(n) + 2));
      const mine = await broker
        .publish({ topic: "a", data: "mine", id: guess })
        .catch((err: { statusCode?: number }) => err);
      if ("statusCode" in mine) {
        expect(mine.statusCode).toBe(400);
        return;
      }
      const next = (await broker.publish({ topic: "a", data: "3" })).event.id;
      expect(next).not.toBe(guess);
    });

    it("drops events older than the age limit from history", async () => {
      const broker = await make(100, 1);
      const first = await broker.publish({ topic: "a", data: "old" });
      const second = await broker.publish({ topic: "a", data: "newer" });
      expect((await eventsAfter(broker, first.event.id, 10)).events.map((e) => e.id)).toEqual([second.event.id]);
      await waitFor(
        "the first event to expire",
        async () => !(await eventsAfter(broker, first.event.id, 10)).found,
        5_000,
      );
      const fresh = await broker.publish({ topic: "a", data: "fresh" });
      expect((await eventsAfter(broker, fresh.event.id, 10)).found).toBe(true);
    });

    it("stores and returns alternate topics, and treats a re-publish with other alternates as a conflict", async () => {
      const broker = await make();
      const seen: StoredEvent[] = [];
      await broker.subscribe((e) => seen.push(e));
      const first = await broker.publish({ topic: "a", data: "plain" });
      const alternates = ["https://example.com/books/1", "books/{id}"];
      const event = (await broker.publish({ topic: "a", data: "x", id: "alt-1", alternates })).event;
      expect(event.alternates).toEqual(alternates);
      await waitFor("both deliveries", () => seen.length >= 2);
      expect(seen[1]?.alternates).toEqual(alternates);
      const [stored] = (await eventsAfter(broker, first.event.id, 10)).events;
      expect(stored?.alternates).toEqual(alternates);
      expect(first.event.alternates).toBeUndefined();
      expect((await eventsAfter(broker, EARLIEST_ID, 1)).events[0]?.alternates).toBeUndefined();
      expect(await broker.publish({ topic: "a", data: "x", id: "alt-1", alternates: [...alternates] })).toMatchObject({
        duplicate: true,
        event: { id: "alt-1", alternates },
      });
      await expect(
        broker.publish({ topic: "a", data: "x", id: "alt-1", alternates: ["https://example.com/books/2"] }),
      ).rejects.toMatchObject({ code: "HERALD_ID_CONFLICT" });
      await expect(broker.publish({ topic: "a", data: "x", id: "alt-1" })).rejects.toMatchObject({
        code: "HERALD_ID_CONFLICT",
      });
    });

    it("keeps each event's fields and acceptance time", async () => {
      const broker = await make();
      const before = Date.now();
      const first = await broker.publish({ topic: "a", data: "x" });
      const { event } = await broker.publish({ topic: "t/1", data: "line 1\nline 2", event: "e", retry: 250 });
      const [stored] = (await eventsAfter(broker, first.event.id, 10)).events;
      expect(stored).toEqual(event);
      expect(stored).toMatchObject({ topic: "t/1", data: "line 1\nline 2", event: "e", retry: 250 });
      // A second's slack: Redis stamps events by its own clock.
      expect(stored?.time).toBeGreaterThanOrEqual(before - 1_000);
      expect(broker.status()).toEqual({ ok: true });
    });

    it("stops delivering after unsubscribe and close", async () => {
      const broker = await make();
      const seen: string[] = [];
      const stays: string[] = [];
      const unsubscribe = await broker.subscribe((e) => seen.push(e.data));
      await broker.subscribe((e) => stays.push(e.data));
      await broker.publish({ topic: "a", data: "1" });
      await waitFor("the first event", () => seen.length === 1);
      await unsubscribe();
      await broker.publish({ topic: "a", data: "2" });
      // Both listeners are fed in the same order: once the one that stays has "2", the other would have too.
      await waitFor("the second event", () => stays.length === 2);
      expect(seen).toEqual(["1"]);
    });
  });
}
