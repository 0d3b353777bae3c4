import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "undici";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { SqliteBroker } from "../../src/broker/sqlite-broker.js";
import { type RedisServer, startRedisServer } from "../helpers/redis-server.js";
import { startServer, type TestServer } from "../helpers/server.js";
import { openStream } from "../helpers/stream.js";

const servers: TestServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

const freshPath = () => join(mkdtempSync(join(tmpdir(), "herald-fail-")), "herald.db");

describe("BROKER=sqlite when storage fails", () => {
  it("answers publishes and /health with 503, and ends a resuming stream cleanly so its client retries", async () => {
    const broker = SqliteBroker.open({ path: freshPath(), historySize: 100 });
    const server = await startServer({}, 0, { broker });
    servers.push(server);
    const first = await server.publish({ topic: "t", data: "stored" });
    const live = await openStream(`${server.url}/events?topic=t`);
    await live.until("the stream to open", (s) => s.retry !== undefined);

    // The database goes away under a running server (here: closed, as a failed disk would leave it).
    await broker.close();
    const publish = await request(`${server.url}/events`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: '{"topic":"t","data":"lost?"}',
    });
    expect(publish.statusCode).toBe(503);
    expect(await publish.body.json()).toMatchObject({
      code: "HERALD_BROKER_UNAVAILABLE",
      message: expect.stringContaining("SQLite"),
    });
    const health = await request(`${server.url}/health`);
    expect(health.statusCode).toBe(503);
    expect(await health.body.json()).toEqual({ status: "unavailable", detail: "the SQLite database is closed" });

    // Headers go out before history is read: the failed read can only end the stream, cleanly,
    // and EventSource reconnects after its retry delay with the same Last-Event-ID.
    const resumed = await openStream(`${server.url}/events?topic=t`, { "last-event-id": first.id });
    expect(resumed.status).toBe(200);
    await resumed.until("the stream to end", (s) => s.ended);
    expect(resumed.endedBy).toBe("server");
    expect(resumed.retry).toBe(3_000);
    expect(resumed.events).toEqual([]);
    // Streams that were already open keep going.
    expect(live.ended).toBe(false);
    live.close();
  });
});

describe("BROKER=redis while Redis is down", () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedisServer(false);
  });
  afterAll(() => redis.stop().catch(() => {}));

  it("keeps sending heartbeats on open streams", async () => {
    const server = await startServer({ broker: "redis", redisUrl: redis.url, redisPrefix: "hb", heartbeatMs: 100 });
    servers.push(server);
    const stream = await openStream(`${server.url}/events?topic=t`);
    await stream.until("a heartbeat", (s) => s.comments.length >= 1);
    await redis.stop();
    const health = await request(`${server.url}/health`);
    expect(health.statusCode).toBe(503);
    await health.body.dump();
    const atOutage = stream.comments.length;
    await stream.until("heartbeats during the outage", (s) => s.comments.length >= atOutage + 5, 10_000);
    expect(stream.ended).toBe(false);
    stream.close();
    await redis.start();
  });
});

describe("a re-created SQLite database", () => {
  it("gets a new id prefix, so an id from the old file is a reset, not a replay from the wrong place", async () => {
    const databasePath = freshPath();
    const first = await startServer({ broker: "sqlite", databasePath });
    const old = await first.publish({ topic: "t", data: "old" });
    await first.close();
    for (const suffix of ["", "-wal", "-shm"]) rmSync(`${databasePath}${suffix}`, { force: true });
    const second = await startServer({ broker: "sqlite", databasePath });
    servers.push(second);
    const fresh = await second.publish({ topic: "t", data: "new" });
    // Both are the first event of their file: only the prefix tells them apart.
    expect(fresh.id.split("-")[1]).toBe(old.id.split("-")[1]);
    expect(fresh.id.split("-")[0]).not.toBe(old.id.split("-")[0]);
    const resumed = await openStream(`${second.url}/events?topic=t`, { "last-event-id": old.id });
    const [reset] = await resumed.take(1);
    expect(reset).toMatchObject({ type: "reset", lastEventId: fresh.id });
    resumed.close();
  });
});
