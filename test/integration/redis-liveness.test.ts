import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { REDIS_LIVENESS_BOUND_MS } from "../../src/broker/redis-broker.js";
import { type HeraldProcess, runHerald } from "../helpers/process.js";
import { publishTo } from "../helpers/publish.js";
import { uniquePrefix } from "../helpers/redis.js";
import { type RedisServer, startRedisServer } from "../helpers/redis-server.js";
import { type OpenStream, openStream } from "../helpers/stream.js";
import { startTcpProxy, type TcpProxy } from "../helpers/tcp-proxy.js";
import { waitFor } from "../helpers/wait.js";

const running: HeraldProcess[] = [];
const streams: OpenStream[] = [];
afterEach(() => {
  for (const s of streams.splice(0)) s.close();
  for (const p of running.splice(0)) p.child.kill("SIGKILL");
});

const health = async (url: string) => {
  const res = await fetch(`${url}/health`);
  return { status: res.status, body: (await res.json()) as { status: string; detail?: string } };
};

describe("Redis liveness: a connection that goes silent without closing", () => {
  let redis: RedisServer;
  let proxy: TcpProxy;
  beforeAll(async () => {
    redis = await startRedisServer(false);
    proxy = await startTcpProxy(redis.port);
  });
  afterAll(async () => {
    await proxy.close();
    await redis.stop();
  });

  it("turns /health and publishes to 503 within the bound, calls a caught publish's outcome unknown, and recovers when it thaws", async () => {
    const node = runHerald({ BROKER: "redis", REDIS_URL: proxy.url, REDIS_PREFIX: uniquePrefix(), LOG_LEVEL: "info" });
    running.push(node);
    const url = await node.url;
    await waitFor("the node to be healthy", async () => (await health(url)).status === 200, 10_000);
    const stream = await openStream(`${url}/events?topic=f`);
    streams.push(stream);
    await stream.until("the stream to open", (s) => s.retry !== undefined);
    expect((await publishTo(url, { topic: "f", data: "before" })).status).toBe(201);
    await stream.until("the first event", (s) => s.events.length === 1);

    proxy.freeze();
    // Sent into the frozen link: Redis may run it later (it does, on thaw), so "not stored" would be a lie.
    const batch = [
      { topic: "f", data: "c1" },
      { topic: "f", data: "c2" },
    ];
    const [caught, caughtBatch] = await Promise.all([
      publishTo(url, { topic: "f", data: "caught" }),
      publishTo(url, batch),
    ]);
    expect(caught.status).toBe(503);
    // A batch caught alike names one id per event, for its retry.
    expect(caughtBatch.status).toBe(503);
    expect(caughtBatch.json).toMatchObject({
      code: "HERALD_PUBLISH_OUTCOME_UNKNOWN",
      ids: [expect.any(String), expect.any(String)],
      message: expect.stringContaining("Retry the batch with the same ids"),
    });
    const batchIds = caughtBatch.json.ids as string[];
    expect(caught.json).toMatchObject({
      code: "HERALD_PUBLISH_OUTCOME_UNKNOWN",
      id: expect.any(String),
      message: expect.stringContaining("may or may not have been stored"),
    });
    const retryId = (caught.json as { id: string }).id;
    expect(caught.json.message).toContain(JSON.stringify(retryId));

    // The bound is the documented one, plus a little for the HTTP round trips of this poll.
    await waitFor(
      "/health to answer 503",
      async () => (await health(url)).status === 503,
      REDIS_LIVENESS_BOUND_MS + 1_000,
    );
    const down = await health(url);
    expect(down.body).toMatchObject({
      status: "unavailable",
      detail: expect.stringContaining("Herald cannot use Redis at"),
    });
    const refused = await publishTo(url, { topic: "f", data: "refused" });
    expect(refused.status).toBe(503);
    expect(refused.json).toMatchObject({ code: "HERALD_BROKER_UNAVAILABLE" });
    expect(refused.json.message).toContain("Redis is unreachable");
    expect(refused.json.message).not.toContain("enableOfflineQueue");
    expect(stream.ended).toBe(false);

    proxy.thaw();
    await waitFor("the node to be healthy again", async () => (await health(url)).status === 200, 15_000);
    // The retry the answer asked for: the event is stored once, whatever happened to the first try.
    const retried = await publishTo(url, { topic: "f", data: "caught", id: retryId });
    expect([200, 201]).toContain(retried.status);
    const retriedBatch = await publishTo(
      url,
      batch.map((event, i) => ({ ...event, id: batchIds[i] })),
    );
    expect(retriedBatch.status).toBe(201);
    expect((await publishTo(url, { topic: "f", data: "after" })).status).toBe(201);
    await stream.until("the event after the thaw", (s) => s.events.some((e) => e.data === "after"), 15_000);
    // Each caught publish is there once: the first try (run by Redis on thaw) or the retry.
    const data = stream.events.map((e) => e.data);
    expect([...data].sort()).toEqual(["after", "before", "c1", "c2", "caught"]);
    expect([data[0], data[4]]).toEqual(["before", "after"]);
    expect(data.indexOf("c2")).toBe(data.indexOf("c1") + 1);
    expect(stream.events.find((e) => e.data === "caught")?.lastEventId).toBe(retried.json.id);
    expect(
      stream.events.filter((e) => e.data.startsWith("c") && e.data !== "caught").map((e) => e.lastEventId),
    ).toEqual((retriedBatch.json as unknown as { id: string }[]).map((answer) => answer.id));
    expect(stream.ended).toBe(false);

    // One line when Redis went, one when it came back: not one per reconnect attempt.
    const out = node.stdout();
    expect(out.match(/lost Redis at 127\.0\.0\.1/g)).toHaveLength(1);
    expect(out.match(/is reachable again after/g)).toHaveLength(1);
  }, 60_000);
});
