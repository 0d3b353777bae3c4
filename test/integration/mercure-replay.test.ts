import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import type { Config } from "../../src/config.js";
import { deleteKeys, REDIS_URL, uniquePrefix } from "../helpers/redis.js";
import { startServer, type TestServer } from "../helpers/server.js";
import { type OpenStream, openStream } from "../helpers/stream.js";
import { hs256, SECRET } from "../helpers/tokens.js";

const HUB = "/.well-known/mercure";
let server: TestServer | undefined;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  await server?.close();
  server = undefined;
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

/** Each broker, configured on its own storage (a temp SQLite file, a unique Redis prefix). */
const brokers: [string, () => Partial<Config>][] = [
  ["memory", () => ({ broker: "memory" })],
  [
    "sqlite",
    () => {
      const dir = mkdtempSync(join(tmpdir(), "herald-mercure-"));
      cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
      return { broker: "sqlite", databasePath: join(dir, "h.db") };
    },
  ],
  [
    "redis",
    () => {
      const prefix = uniquePrefix();
      cleanups.push(() => deleteKeys(prefix));
      return { broker: "redis", redisUrl: REDIS_URL, redisPrefix: prefix };
    },
  ],
];

async function publish(fields: [string, string][]): Promise<string> {
  const res = await request(`${server?.url}${HUB}`, {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      authorization: `Bearer ${await hs256({ publish: ["*"] })}`,
    },
    body: new URLSearchParams(fields).toString(),
  });
  const text = await res.body.text();
  expect(res.statusCode, text).toBe(200);
  return text;
}

async function subscribe(topics: string[], headers: Record<string, string>, extra = ""): Promise<OpenStream> {
  const q = topics.map((t) => `topic=${encodeURIComponent(t)}`).join("&");
  const stream = await openStream(`${server?.url}${HUB}?${q}${extra}`, headers);
  expect(stream.status).toBe(200);
  return stream;
}

describe.each(brokers)("Mercure replay on the %s broker", (_name, storage) => {
  it("replays by template and alternate topic, privately where the token allows, with Last-Event-ID headers as Mercure sends them", async () => {
    server = await startServer({ publisherJwtKey: SECRET, subscriberJwtKey: SECRET, ...storage() });
    const first = await publish([
      ["topic", "https://example.com/books/0"],
      ["data", "before"],
    ]);
    await publish([
      ["topic", "https://example.com/books/1"],
      ["data", "book"],
    ]);
    await publish([
      ["topic", "https://example.com/news"],
      ["topic", "https://example.com/books/2"],
      ["data", "alternate"],
    ]);
    await publish([
      ["topic", "https://example.com/other"],
      ["data", "other"],
    ]);
    await publish([
      ["topic", "https://example.com/books/3"],
      ["data", "secret"],
      ["private", "on"],
    ]);

    const anonymous = await subscribe(["https://example.com/books/{id}"], { "last-event-id": first });
    expect(anonymous.headers["last-event-id"]).toBe(first);
    const allowed = await subscribe(
      ["https://example.com/books/{id}"],
      { authorization: `Bearer ${await hs256({ subscribe: ["https://example.com/books/{id}"] })}` },
      "&lastEventID=earliest",
    );
    expect(allowed.headers["last-event-id"]).toBe("earliest");
    await anonymous.until("two replayed updates", (s) => s.events.length === 2);
    await allowed.until("four replayed updates", (s) => s.events.length === 4);
    expect(anonymous.events.map((e) => e.data)).toEqual(["book", "alternate"]);
    expect(allowed.events.map((e) => e.data)).toEqual(["before", "book", "alternate", "secret"]);

    const lost = await subscribe(["https://example.com/books/{id}"], { "last-event-id": "gone" });
    await lost.until("the reset", (s) => s.events.length === 1);
    expect(lost.events[0]?.type).toBe("reset");
    expect(lost.headers["last-event-id"]).toBe(lost.events[0]?.lastEventId);
    for (const s of [anonymous, allowed, lost]) s.close();
  });
});

describe("the Last-Event-ID response header", () => {
  it("is absent without a Last-Event-ID, and earliest after an unknown id on an empty history", async () => {
    server = await startServer({});
    const plain = await subscribe(["a"], {});
    expect(plain.headers["last-event-id"]).toBeUndefined();
    const empty = await subscribe(["a"], { "last-event-id": "unknown" });
    expect(empty.headers["last-event-id"]).toBe("earliest");
    plain.close();
    empty.close();
  });
});
