import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type Broker, RETIRED_IDS_MIN, retiredIdCapacity } from "../../src/broker/broker.js";
import { MemoryBroker } from "../../src/broker/memory-broker.js";
import { SqliteBroker } from "../../src/broker/sqlite-broker.js";

/**
 * The engines that remember retired ids (memory, SQLite): how many they remember, and that an id
 * they assign never takes one. Redis keeps its own bound and is not part of this file.
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
    expect((await broker.locate(guess)).found).toBe(false);
    await expect(broker.publish({ topic: "t", data: "mine", id: guess })).rejects.toMatchObject({
      code: "HERALD_ID_RETIRED",
    });
  });
});
