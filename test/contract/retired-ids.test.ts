import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { type Broker, RETIRED_IDS_MIN, retiredIdCapacity } from "../../src/broker/broker.js";
import { MemoryBroker } from "../../src/broker/memory-broker.js";
import { SqliteBroker } from "../../src/broker/sqlite-broker.js";

/**
 * The engines that remember retired ids (memory, SQLite): how many they remember, and that an id
 * they assign never takes one; and details of their contract the shared suite leaves open. Redis
 * keeps its own bound and is not part of this file.
 */
const engines: [string, (historySize: number) => Broker][] = [
  ["MemoryBroker", (historySize) => new MemoryBroker({ historySize })],
  [
    "SqliteBroker",
    (historySize) =>
      SqliteBroker.open({ historySize, path: join(mkdtempSync(join(tmpdir(), "herald-retired-")), "herald.db") }),
  ],
];

const open: Broker[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((b) => b.close()));
});

/** Publishes `n` events, concurrently in rounds (SQLite commits each round in one transaction). */
async function publishFiller(broker: Broker, n: number) {
  for (let done = 0; done < n; ) {
    const round = Math.min(1_000, n - done);
    await Promise.all(Array.from({ length: round }, (_, i) => broker.publish({ topic: "t", data: `${done + i}` })));
    done += round;
  }
}

describe("retiredIdCapacity", () => {
  it("is HISTORY_SIZE, and at least RETIRED_IDS_MIN", () => {
    expect(RETIRED_IDS_MIN).toBe(10_000);
    expect(retiredIdCapacity(1)).toBe(10_000);
    expect(retiredIdCapacity(10_000)).toBe(10_000);
    expect(retiredIdCapacity(25_000)).toBe(25_000);
  });
});

describe.each(engines)("%s", (_name, create) => {
  const make = (historySize: number) => {
    const broker = create(historySize);
    open.push(broker);
    return broker;
  };

  it("remembers exactly the last RETIRED_IDS_MIN ids that left a small history, then forgets the oldest", async () => {
    const broker = make(1);
    await broker.publish({ topic: "t", data: "first", id: "first" });
    // "first" and 9,999 more ids leave history: 10,000 retired, all remembered.
    await publishFiller(broker, 10_000);
    await expect(broker.publish({ topic: "t", data: "first", id: "first" })).rejects.toMatchObject({
      code: "HERALD_ID_RETIRED",
    });
    // One more leaves: 10,001 retired, and the oldest, "first", is forgotten.
    await publishFiller(broker, 1);
    const again = await broker.publish({ topic: "t", data: "first again", id: "first" });
    expect(again).toMatchObject({ duplicate: false, event: { id: "first", data: "first again" } });
  }, 60_000);

  it("remembers the ids it assigned as it remembers chosen ones: the last RETIRED_IDS_MIN to leave", async () => {
    const broker = make(1);
    const assigned = (await broker.publish({ topic: "t", data: "first" })).event.id;
    await publishFiller(broker, 10_000);
    expect((await broker.locate(assigned)).found).toBe(false);
    await expect(broker.publish({ topic: "t", data: "first", id: assigned })).rejects.toMatchObject({
      code: "HERALD_ID_RETIRED",
    });
    await publishFiller(broker, 1);
    const again = await broker.publish({ topic: "t", data: "first again", id: assigned });
    expect(again).toMatchObject({ duplicate: false, event: { id: assigned, data: "first again" } });
    expect((await broker.locate(assigned)).found).toBe(true);
  }, 60_000);

  it("never assigns, in a batch, the id of its own form that a later item of the same batch chooses", async () => {
    const broker = make(10);
    const generated = (await broker.publish({ topic: "t", data: "1" })).event.id;
    // The first item is assigned the next sequence number; the second chooses that very id.
    const next = generated.replace(/(\d+)$/, (n) => String(Number(n) + 1));
    const [assigned, chosen] = await broker.publishBatch([
      { topic: "t", data: "assigned" },
      { topic: "t", data: "chosen", id: next },
    ]);
    expect(chosen?.event.id).toBe(next);
    expect(assigned?.event.id).not.toBe(next);
    expect(assigned?.event.id.startsWith(`${next}-`)).toBe(true);
  });

  it("refuses an id of its own form whose number left history recently, even if that event had another id", async () => {
    const broker = make(1);
    const generated = (await broker.publish({ topic: "t", data: "1" })).event.id;
    // The second event takes the next number under a publisher's id, then leaves history.
    const unissued = generated.replace(/(\d+)$/, (n) => String(Number(n) + 1));
    await broker.publish({ topic: "t", data: "2", id: "publisher-2" });
    await publishFiller(broker, 1);
    // Never issued, but of the form and in the range of ids that left: refused, like them.
    await expect(broker.publish({ topic: "t", data: "x", id: unissued })).rejects.toMatchObject({
      code: "HERALD_ID_RETIRED",
    });
  });

  it("never assigns an id a publisher chose that has since left history", async () => {
    const broker = make(2);
    const generated = (await broker.publish({ topic: "t", data: "1" })).event.id;
    // The id the broker would assign to the fifth event, taken by the second and pushed out by the fourth.
    const guess = generated.replace(/(\d+)$/, "5");
    await broker.publish({ topic: "t", data: "mine", id: guess });
    await publishFiller(broker, 2);
    expect((await broker.locate(guess)).found).toBe(false);
    const fifth = (await broker.publish({ topic: "t", data: "5" })).event;
    expect(fifth.id).not.toBe(guess);
    // The assigned id is the taken one with a suffix: still this run's, still unique.
    expect(fifth.id.startsWith(`${guess}-`)).toBe(true);
    expect((await broker.locate(fifth.id)).found).toBe(true);
    expect((await broker.locate(guess)).found).toBe(false);
    await expect(broker.publish({ topic: "t", data: "mine", id: guess })).rejects.toMatchObject({
      code: "HERALD_ID_RETIRED",
    });
  });
});

describe.each(engines)("%s also", (_name, create) => {
  const make = (historySize: number) => {
    const broker = create(historySize);
    open.push(broker);
    return broker;
  };

  it.each<[string, Record<string, unknown>]>([
    ["topic", { topic: "other" }],
    ["event name", { event: "other" }],
    ["retry", { retry: 1_000 }],
    ["alternates of the same length", { alternates: ["a", "c"] }],
    ["alternates in another order", { alternates: ["b", "a"] }],
  ])("refuses a re-publish of an id with another %s", async (_what, change) => {
    const broker = make(10);
    const original = { topic: "t", data: "x", id: "e-1", event: "e", retry: 500, alternates: ["a", "b"] };
    await broker.publish(original);
    await expect(broker.publish({ ...original, ...change })).rejects.toMatchObject({ code: "HERALD_ID_CONFLICT" });
    expect((await broker.publish(original)).duplicate).toBe(true);
  });

  it("treats absent and empty alternates as the same content", async () => {
    const broker = make(10);
    await broker.publish({ topic: "t", data: "x", id: "e-1" });
    expect((await broker.publish({ topic: "t", data: "x", id: "e-1", alternates: [] })).duplicate).toBe(true);
  });

  it("reports the only event in history as the head", async () => {
    const broker = make(1);
    const { event } = await broker.publish({ topic: "t", data: "1" });
    expect(await broker.locate("unknown")).toEqual({ found: false, head: { id: event.id, pos: event.pos } });
    const next = (await broker.publish({ topic: "t", data: "2" })).event;
    expect((await broker.locate(next.id)).head).toEqual({ id: next.id, pos: next.pos });
  });

  it("delivers nothing to listeners after close", async () => {
    const broker = make(10);
    const seen: string[] = [];
    await broker.subscribe((e) => seen.push(e.data));
    await broker.close();
    await broker.publish({ topic: "t", data: "after close" }).catch(() => undefined);
    expect(seen).toEqual([]);
  });
});

describe("MemoryBroker's age limit", () => {
  it("keeps an event exactly HISTORY_TTL_S old and drops it a millisecond later, down to the last one", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    try {
      vi.setSystemTime(1_800_000_000_000);
      const broker = new MemoryBroker({ historySize: 10, historyTtlS: 60 });
      const { event } = await broker.publish({ topic: "t", data: "only" });
      vi.setSystemTime(1_800_000_000_000 + 60_000);
      expect((await broker.locate(event.id)).found).toBe(true);
      vi.setSystemTime(1_800_000_000_000 + 60_001);
      expect(await broker.locate(event.id)).toEqual({ found: false, head: undefined });
      expect(await broker.read("", 10)).toEqual([]);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("SqliteBroker's id prefix", () => {
  it("stays the same across a restart of one database, and differs between databases", async () => {
    const path = join(mkdtempSync(join(tmpdir(), "herald-retired-")), "herald.db");
    const prefix = (id: string) => id.replace(/-\d+$/, "");
    const first = SqliteBroker.open({ path, historySize: 10 });
    const before = (await first.publish({ topic: "t", data: "1" })).event;
    await first.close();
    const reopened = SqliteBroker.open({ path, historySize: 10 });
    open.push(reopened);
    const after = (await reopened.publish({ topic: "t", data: "2" })).event;
    expect(prefix(after.id)).toBe(prefix(before.id));
    expect((await reopened.locate(before.id)).found).toBe(true);
    const other = SqliteBroker.open({
      path: join(mkdtempSync(join(tmpdir(), "herald-retired-")), "herald.db"),
      historySize: 10,
    });
    open.push(other);
    const elsewhere = (await other.publish({ topic: "t", data: "1" })).event;
    // A client resuming with an id from another (or a re-created) database gets a reset, not a wrong replay.
    expect(prefix(elsewhere.id)).not.toBe(prefix(before.id));
    expect((await other.locate(before.id)).found).toBe(false);
  });
});
