import { afterAll, afterEach, describe, expect, it } from "vitest";
import { EARLIEST_ID, type EventInput } from "../../src/broker/broker.js";
import { RedisBroker } from "../../src/broker/redis-broker.js";
import { deleteKeys, REDIS_URL, uniquePrefix } from "../helpers/redis.js";
import { silentLogger } from "../helpers/server.js";

// The Redis broker sends each batch item only the fields some item of the batch has, and looks
// keys up in slices of the batch: these batches mix what items carry and span several slices.
const prefixes: string[] = [];
const open: RedisBroker[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((b) => b.close()));
});
afterAll(async () => {
  await Promise.all(prefixes.map((prefix) => deleteKeys(prefix)));
});

async function make(historySize: number): Promise<RedisBroker> {
  const prefix = uniquePrefix();
  prefixes.push(prefix);
  const broker = await RedisBroker.connect({ url: REDIS_URL, prefix, historySize, log: silentLogger });
  open.push(broker);
  return broker;
}

describe("Redis batches whose items carry different fields", () => {
  const mixed: EventInput[] = [
    { topic: "a", data: "plain" },
    { topic: "a", data: "with id", id: "m-1" },
    { topic: "b", data: "event", event: "tick" },
    { topic: "a", data: "retry", retry: 1500, id: "m-2" },
    { topic: "a", data: "private", private: true },
    { topic: "a", data: "alternates", alternates: ["c", "d"], id: "m-3" },
    { topic: "a", data: "all", id: "m-4", event: "e", retry: 0, private: true, alternates: ["x"] },
  ];

  it("stores each item with exactly its own fields", async () => {
    const broker = await make(100);
    const results = await broker.publishBatch(mixed);
    const events = await broker.read("", 100);
    expect(events).toEqual(results.map((r) => r.event));
    for (const [i, input] of mixed.entries()) {
      const { id, time, pos, ...content } = events[i] as (typeof events)[number];
      expect(content).toEqual({ ...input, id: undefined });
      if (input.id !== undefined) expect(id).toBe(input.id);
    }
  });

  it("finds a re-publish the same or a conflict, a field another item has included", async () => {
    const broker = await make(100);
    const first = await broker.publishBatch(mixed);
    const again = await broker.publishBatch([{ topic: "z", data: "new" }, ...mixed.filter((e) => e.id)]);
    expect(again.map((r) => r.duplicate)).toEqual([false, true, true, true, true]);
    expect(again.slice(1).map((r) => r.event)).toEqual(first.filter((_, i) => mixed[i]?.id).map((r) => r.event));
    // Differs only by a field that no other item of its batch has.
    await expect(
      broker.publishBatch([
        { topic: "a", data: "with id", id: "m-1", retry: 5 },
        { topic: "a", data: "n" },
      ]),
    ).rejects.toMatchObject({ code: "HERALD_ID_CONFLICT", index: 0 });
    await expect(
      broker.publishBatch([
        { topic: "a", data: "n" },
        { topic: "a", data: "all", id: "m-4", event: "e", retry: 0, alternates: ["x"] },
      ]),
    ).rejects.toMatchObject({ code: "HERALD_ID_CONFLICT", index: 1 });
    // Within a batch: the second copy differs only by event, which the first lacks.
    await expect(
      broker.publishBatch([
        { topic: "a", data: "q", id: "q" },
        { topic: "a", data: "q", id: "q", event: "e" },
      ]),
    ).rejects.toMatchObject({ code: "HERALD_ID_CONFLICT", index: 1 });
    const same = await broker.publishBatch([
      { topic: "a", data: "q", id: "q", event: "e" },
      { topic: "a", data: "r" },
      { topic: "a", data: "q", id: "q", event: "e" },
    ]);
    expect(same.map((r) => r.duplicate)).toEqual([false, false, true]);
  });

  it("checks ids past the first slices of a large batch: duplicates, and a retired id refused", async () => {
    const broker = await make(3_000);
    await broker.publish({ topic: "a", data: "old", id: "old" });
    await broker.publish({ topic: "a", data: "kept", id: "kept" });
    const batch = Array.from({ length: 2_999 }, (_, i) => ({ topic: "a", data: `${i}`, id: `big-${i}` }));
    // 3,001 events in a history of 3,000: "old" leaves and is retired.
    const results = await broker.publishBatch([...batch.slice(0, 2_500), { topic: "a", data: "kept", id: "kept" }]);
    expect(results[2_500]?.duplicate).toBe(true);
    await broker.publishBatch(batch.slice(2_500));
    expect((await broker.locate("old")).found).toBe(false);
    const head = (await broker.locate(EARLIEST_ID)).head;
    const retry = await broker.publishBatch(batch.slice(0, 2_400));
    expect(retry.every((r) => r.duplicate)).toBe(true);
    await expect(
      broker.publishBatch([
        ...Array.from({ length: 2_200 }, (_, i) => ({ topic: "a", data: `n${i}` })),
        batch[0] as EventInput,
        { topic: "a", data: "old", id: "old" },
      ]),
    ).rejects.toMatchObject({ code: "HERALD_ID_RETIRED", index: 2_201 });
    expect((await broker.locate(EARLIEST_ID)).head).toEqual(head);
  });
});
