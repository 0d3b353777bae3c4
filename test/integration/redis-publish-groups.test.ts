import { afterEach, describe, expect, it } from "vitest";
import { BEFORE_FIRST_POS } from "../../src/broker/broker.js";
import { RedisBroker, type RedisBrokerOptions } from "../../src/broker/redis-broker.js";
import { type RedisServer, redisCall, startRedisServer } from "../helpers/redis-server.js";
import { silentLogger } from "../helpers/server.js";

// Single publishes made while one is on its way to Redis wait for it, then go together in one
// script call: under load, Redis runs one script for many publishes. Each keeps its own outcome.
let server: RedisServer | undefined;
const open: RedisBroker[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((b) => b.close()));
  await server?.kill();
  server = undefined;
});

async function connect(options: Partial<RedisBrokerOptions> = {}) {
  server ??= await startRedisServer(false);
  const broker = await RedisBroker.connect({
    url: server.url,
    prefix: "h",
    historySize: 1_000,
    log: silentLogger,
    ...options,
  });
  open.push(broker);
  await redisCall(server.port, "CONFIG", "RESETSTAT");
  return { broker, port: server.port };
}

async function scriptCalls(port: number): Promise<number> {
  const stats = String(await redisCall(port, "INFO", "commandstats"));
  return (
    Number(/cmdstat_evalsha:calls=(\d+)/.exec(stats)?.[1] ?? 0) +
    Number(/cmdstat_eval:calls=(\d+)/.exec(stats)?.[1] ?? 0)
  );
}

describe("Redis: single publishes made together", () => {
  it("go to Redis in a few script calls, each with its own event, in the order they were made", async () => {
    const { broker, port } = await connect();
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        broker.publish({ topic: i % 2 ? "a" : "b", data: `${i}`, ...(i % 5 === 0 ? { id: `own-${i}` } : {}) }),
      ),
    );
    // The first goes alone; the 49 made while it was on its way go in one call.
    expect(await scriptCalls(port)).toBe(2);
    expect(results.map((r) => r.event.data)).toEqual(Array.from({ length: 50 }, (_, i) => `${i}`));
    expect(results.every((r) => !r.duplicate)).toBe(true);
    expect(results.filter((_, i) => i % 5 === 0).map((r) => r.event.id)).toEqual(
      Array.from({ length: 10 }, (_, k) => `own-${k * 5}`),
    );
    const positions = results.map((r) => r.event.pos);
    expect([...positions].sort()).toEqual(positions);
    expect(new Set(positions).size).toBe(50);
    expect((await broker.read(BEFORE_FIRST_POS, 100)).map((e) => e.data)).toEqual(results.map((r) => r.event.data));
  });

  it("answers each on its own: a refused id fails only its publish, a repeated one is a duplicate", async () => {
    const { broker } = await connect();
    await broker.publish({ topic: "t", data: "first", id: "taken" });
    const [first, conflict, same, again, last] = await Promise.allSettled([
      broker.publish({ topic: "t", data: "1" }),
      broker.publish({ topic: "t", data: "other", id: "taken" }),
      broker.publish({ topic: "t", data: "first", id: "taken" }),
      broker.publish({ topic: "t", data: "2", id: "twice" }),
      broker.publish({ topic: "t", data: "2", id: "twice" }),
    ]);
    expect(first).toMatchObject({ status: "fulfilled", value: { duplicate: false, event: { data: "1" } } });
    expect(conflict).toMatchObject({ status: "rejected", reason: { code: "HERALD_ID_CONFLICT" } });
    expect(same).toMatchObject({
      status: "fulfilled",
      value: { duplicate: true, event: { id: "taken", data: "first" } },
    });
    expect(again).toMatchObject({ status: "fulfilled", value: { duplicate: false, event: { id: "twice" } } });
    expect(last).toMatchObject({ status: "fulfilled", value: { duplicate: true, event: { id: "twice" } } });
    expect((await broker.read(BEFORE_FIRST_POS, 100)).map((e) => e.data)).toEqual(["first", "1", "2"]);
  });

  it("names each publish's own retry id when the outcome is unknown, and each retry then finds its event", async () => {
    // No replica confirms within the timeout: the publishes are stored, but Herald cannot know it.
    const { broker } = await connect({ waitReplicas: 1, waitTimeoutMs: 50 });
    const settled = await Promise.allSettled([
      broker.publish({ topic: "t", data: "alone" }),
      broker.publish({ topic: "t", data: "b" }),
      broker.publish({ topic: "t", data: "c", id: "mine" }),
      broker.publish({ topic: "t", data: "d" }),
    ]);
    const ids = settled.map((s) => {
      expect(s).toMatchObject({ status: "rejected", reason: { code: "HERALD_PUBLISH_OUTCOME_UNKNOWN" } });
      return ((s as PromiseRejectedResult).reason as { publishId: string }).publishId;
    });
    // b and d went in one call: one key drawn for it, and their places among its events without id.
    const [drawn] = (ids[1] as string).split(".");
    expect(ids.slice(1)).toEqual([`${drawn}.0`, "mine", `${drawn}.1`]);
    const retried = await broker
      .publishBatch(["alone", "b", "c", "d"].map((data, i) => ({ topic: "t", data, id: ids[i] as string })))
      .catch((err: Error) => err);
    // WAIT still fails, but the script answered first: read what it stored instead.
    expect(retried).toMatchObject({ code: "HERALD_PUBLISH_OUTCOME_UNKNOWN" });
    expect((await broker.read(BEFORE_FIRST_POS, 100)).map((e) => e.data)).toEqual(["alone", "b", "c", "d"]);
  });
});
