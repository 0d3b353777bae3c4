import { mkdtempSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import type { Config } from "../../src/config.js";
import { publishTo } from "../helpers/publish.js";
import { deleteKeys, redisSettings } from "../helpers/redis.js";
import { startServer, type TestServer } from "../helpers/server.js";
import { openStream } from "../helpers/stream.js";
import { waitFor } from "../helpers/wait.js";

const servers: TestServer[] = [];
const prefixes: string[] = [];
async function start(overrides: Partial<Config> = {}) {
  const server = await startServer({ publishRateLimit: 0, ...overrides });
  servers.push(server);
  return server;
}
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});
afterAll(async () => {
  await Promise.all(prefixes.map((prefix) => deleteKeys(prefix)));
});

interface Answer {
  statusCode?: number;
  code?: string;
  message?: string;
  id?: string;
  topic?: string;
  duplicate?: boolean;
}

async function post(server: TestServer, body: unknown): Promise<{ status: number; body: Answer & Answer[] }> {
  const { status, json } = await publishTo<Answer & Answer[]>(server.url, body);
  return { status, body: json };
}

/**
 * A raw HTTP/1.1 stream that keeps each chunk of the chunked body apart: one chunk is one write
 * of Herald's to this subscriber.
 */
async function rawChunks(url: string, path: string) {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  socket.write(`GET ${path} HTTP/1.1\r\nHost: ${hostname}\r\nAccept: text/event-stream\r\n\r\n`);
  const chunks: string[] = [];
  let buffer = Buffer.alloc(0);
  let headDone = false;
  socket.on("data", (data: Buffer) => {
    buffer = Buffer.concat([buffer, data]);
    if (!headDone) {
      const end = buffer.indexOf("\r\n\r\n");
      if (end < 0) return;
      buffer = buffer.subarray(end + 4);
      headDone = true;
    }
    for (;;) {
      const line = buffer.indexOf("\r\n");
      if (line < 0) return;
      const size = Number.parseInt(buffer.subarray(0, line).toString(), 16);
      if (buffer.length < line + 2 + size + 2) return;
      chunks.push(buffer.subarray(line + 2, line + 2 + size).toString());
      buffer = buffer.subarray(line + 2 + size + 2);
    }
  });
  await waitFor("the stream's first chunk", () => chunks.length > 0);
  return { chunks, close: () => socket.destroy() };
}

const engines: [string, () => Partial<Config>][] = [
  ["memory", () => ({ broker: "memory" })],
  ["sqlite", () => ({ broker: "sqlite", databasePath: join(mkdtempSync(join(tmpdir(), "herald-batch-")), "h.db") })],
  ["redis", () => redisSettings(prefixes)],
];

describe.each(engines)("POST /events with a batch (%s broker)", (_name, engine) => {
  it("stores the events in order, adjacent, answers one result each, and writes them in one chunk per subscriber", async () => {
    const server = await start(engine());
    const stream = await openStream(`${server.url}/events?topic=a`);
    const everything = await openStream(`${server.url}/events?topic=*`);
    const raw = await rawChunks(server.url, "/events?topic=a");
    const batch = Array.from({ length: 50 }, (_, i) => ({ topic: i % 5 === 4 ? "b" : "a", data: `b${i}`, event: "e" }));
    // Single publishes race the batch: none may land between its events.
    const singles = Array.from({ length: 10 }, (_, i) => server.publish({ topic: "a", data: `s${i}` }));
    const { status, body } = await post(server, batch);
    await Promise.all(singles);
    expect(status).toBe(201);
    expect(body.map((r) => [r.topic, r.duplicate])).toEqual(batch.map((e) => [e.topic, undefined]));
    expect(new Set(body.map((r) => r.id)).size).toBe(50);

    await everything.until("every event", (s) => s.events.length >= 60);
    const all = everything.events.map((e) => e.data);
    const first = all.indexOf("b0");
    expect(all.slice(first, first + 50)).toEqual(batch.map((e) => e.data));
    expect(everything.events.slice(first, first + 50).map((e) => e.lastEventId)).toEqual(body.map((r) => r.id));

    const onA = batch.filter((e) => e.topic === "a").map((e) => e.data);
    await stream.until("the batch on topic a", (s) => s.events.filter((e) => e.data.startsWith("b")).length >= 40);
    expect(stream.events.map((e) => e.data).filter((d) => d.startsWith("b"))).toEqual(onA);
    // Fan-out: the batch reached the raw subscriber as one write, not forty.
    await waitFor("the raw subscriber's batch", () => raw.chunks.join("").includes("data: b48\n"));
    const withBatch = raw.chunks.filter((chunk) => chunk.includes("data: b"));
    expect(withBatch).toHaveLength(1);
    expect(withBatch[0]?.match(/^data: b\d+$/gm)).toEqual(onA.map((d) => `data: ${d}`));
    raw.close();
    stream.close();
    everything.close();
  });

  it("stores nothing when one item's id is taken by other content, names the item, and keeps streams going", async () => {
    const server = await start(engine());
    const stream = await openStream(`${server.url}/events?topic=a`);
    await server.publish({ topic: "a", data: "x", id: "taken" });
    const { status, body } = await post(server, [
      { topic: "a", data: "1", id: "fresh" },
      { topic: "a", data: "other", id: "taken" },
      { topic: "a", data: "3" },
    ]);
    expect(status).toBe(409);
    expect(body.code).toBe("HERALD_ID_CONFLICT");
    expect(body.message).toMatch(/^item 1: An event with id "taken"/);
    await server.publish({ topic: "a", data: "after" });
    await stream.until("the next event", (s) => s.events.length >= 2);
    expect(stream.events.map((e) => e.data)).toEqual(["x", "after"]);
    // "fresh" was not stored: it is free to name an event now.
    expect((await post(server, { topic: "a", data: "again", id: "fresh" })).body.duplicate).toBeUndefined();
    stream.close();
  });

  it("makes a retried batch idempotent per item: what was stored is a duplicate, the rest is new", async () => {
    const server = await start(engine());
    const stream = await openStream(`${server.url}/events?topic=a`);
    const batch = [
      { topic: "a", data: "1", id: "order-1" },
      { topic: "a", data: "2", id: "order-2" },
    ];
    expect((await post(server, batch)).status).toBe(201);
    const retry = await post(server, [...batch, { topic: "a", data: "3", id: "order-3" }, batch[0]]);
    expect(retry.status).toBe(201);
    expect(retry.body.map((r) => [r.id, r.duplicate])).toEqual([
      ["order-1", true],
      ["order-2", true],
      ["order-3", undefined],
      ["order-1", true],
    ]);
    await stream.until("three events", (s) => s.events.length >= 3);
    await server.publish({ topic: "a", data: "last" });
    await stream.until("the last event", (s) => s.events.some((e) => e.data === "last"));
    expect(stream.events.map((e) => e.lastEventId)).toEqual(["order-1", "order-2", "order-3", expect.any(String)]);
    stream.close();
  });
});

describe("POST /events with a bad batch", () => {
  it("answers a 400 that names the bad item, and stores none of the batch", async () => {
    const server = await start({ maxBatchEvents: 5 });
    const stream = await openStream(`${server.url}/events?topic=*`);
    const cases: [unknown, RegExp][] = [
      [[], /^A batch holds 1 to 5 events \(MAX_BATCH_EVENTS\)/],
      [Array.from({ length: 6 }, (_, i) => ({ data: `${i}` })), /^A batch holds 1 to 5 events/],
      [[{ data: "ok" }, { data: "ok" }, { data: "x", retry: -1 }], /^item 2: retry must be a whole number/],
      [[{ data: "ok" }, { topic: "bad\ntopic", data: "x" }], /^item 1: Invalid topic/],
      [[{ data: "ok" }, { data: "x", colour: "red" }], /^item 1: Unknown field "colour"/],
      [[{ data: "ok" }, { event: "e" }], /^item 1: data is required/],
      [[{ data: "ok" }, "text"], /^item 1: Each event of a batch is a JSON object/],
      [[{ data: "ok" }, { topic: "*", data: "x" }], /^item 1: Invalid topic/],
      [[{ data: "ok" }, { data: "x", id: "earliest" }], /^item 1: id "earliest" is reserved/],
      [[{ data: "ok" }, { data: "x", private: true }], /^item 1: This event is "private"/],
    ];
    for (const [body, message] of cases) {
      const answer = await post(server, body);
      expect(answer.status, JSON.stringify(body)).toBe(400);
      expect(answer.body.message, JSON.stringify(body)).toMatch(message);
    }
    const tooLarge = await post(server, [{ data: "ok" }, { data: "\n".repeat(70_000) }]);
    expect(tooLarge.status).toBe(413);
    expect(tooLarge.body.message).toMatch(/^item 1: This event takes \d+ bytes on the wire/);
    await server.publish({ data: "the only event" });
    await stream.until("the only event", (s) => s.events.length >= 1);
    expect(stream.events.map((e) => e.data)).toEqual(["the only event"]);
    expect(server.app.herald.stats().published).toBe(1);
    stream.close();
  });

  it("publishes a batch in process too, as one unit", async () => {
    const server = await start();
    const stream = await openStream(`${server.url}/events?topic=a`);
    const answers = await server.app.herald.publish([
      { topic: "a", data: "1" },
      { topic: "a", data: "2", id: "two" },
    ]);
    expect(answers.map((a) => a.topic)).toEqual(["a", "a"]);
    expect(answers[1]?.id).toBe("two");
    await expect(
      server.app.herald.publish([
        { topic: "a", data: "3" },
        { topic: "a", data: "other", id: "two" },
      ]),
    ).rejects.toMatchObject({ code: "HERALD_ID_CONFLICT", message: expect.stringMatching(/^item 1: /) });
    // The same limits as over HTTP.
    await expect(server.app.herald.publish([])).rejects.toThrow(/^A batch holds 1 to 1000 events/);
    await stream.until("two events", (s) => s.events.length >= 2);
    expect(stream.events.map((e) => e.data)).toEqual(["1", "2"]);
    stream.close();
  });
});
