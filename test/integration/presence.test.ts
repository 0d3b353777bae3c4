import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import type { Broker } from "../../src/broker/broker.js";
import { MemoryBroker } from "../../src/broker/memory-broker.js";
import { RedisBroker } from "../../src/broker/redis-broker.js";
import { SqliteBroker } from "../../src/broker/sqlite-broker.js";
import { RedisPresenceStore } from "../../src/mercure/presence-redis.js";
import {
  getSubscriptions,
  type PresenceApp,
  startPresenceApp,
  subscriptionUpdates,
  watchEverything,
} from "../helpers/presence.js";
import { deleteKeys, REDIS_URL, uniquePrefix } from "../helpers/redis.js";
import { silentLogger } from "../helpers/server.js";
import { type OpenStream, openStream } from "../helpers/stream.js";
import { hs256 } from "../helpers/tokens.js";
import { waitFor } from "../helpers/wait.js";

const BOOKS = "https://example.com/books/{id}";
const ANN = "urn:uuid:bb3de268-05b0-4c65-b44e-8f9acefc29d6";
const BOB = "urn:uuid:1e0cba4c-4bcd-44f0-ae8a-7b76f7ef1280";
const BOOKS_ANN =
  "/.well-known/mercure/subscriptions/https%3A%2F%2Fexample.com%2Fbooks%2F%7Bid%7D/urn%3Auuid%3Abb3de268-05b0-4c65-b44e-8f9acefc29d6";
const NEWS_ANN = "/.well-known/mercure/subscriptions/news/urn%3Auuid%3Abb3de268-05b0-4c65-b44e-8f9acefc29d6";
const NEWS_BOB = "/.well-known/mercure/subscriptions/news/urn%3Auuid%3A1e0cba4c-4bcd-44f0-ae8a-7b76f7ef1280";
const PATH = "/.well-known/mercure/subscriptions";

const apps: PresenceApp[] = [];
const streams: OpenStream[] = [];
const prefixes: string[] = [];
afterEach(async () => {
  for (const s of streams.splice(0)) s.close();
  for (const app of apps.splice(0)) await app.close();
  for (const prefix of prefixes.splice(0)) await deleteKeys(prefix);
});

async function start(broker: Broker = new MemoryBroker({ historySize: 1_000 })): Promise<PresenceApp> {
  const app = await startPresenceApp(broker);
  apps.push(app);
  return app;
}

async function watch(url: string, headers: Record<string, string> = {}): Promise<OpenStream> {
  const stream = await watchEverything(url, headers);
  streams.push(stream);
  return stream;
}

describe("subscription updates (SUBSCRIPTIONS=true)", () => {
  const engines: [string, () => Promise<{ broker: Broker; store?: RedisPresenceStore }>][] = [
    ["memory", async () => ({ broker: new MemoryBroker({ historySize: 1_000 }) })],
    [
      "sqlite",
      async () => ({
        broker: SqliteBroker.open({
          path: join(mkdtempSync(join(tmpdir(), "herald-presence-")), "h.db"),
          historySize: 1_000,
        }),
      }),
    ],
    [
      "redis",
      async () => {
        const prefix = uniquePrefix();
        prefixes.push(prefix);
        const broker = await RedisBroker.connect({ url: REDIS_URL, prefix, historySize: 1_000, log: silentLogger });
        return { broker, store: new RedisPresenceStore({ url: REDIS_URL, prefix, log: silentLogger }) };
      },
    ],
  ];

  for (const [engine, make] of engines) {
    it(`announces each selector on connect and disconnect as a private update, delivered and replayable (${engine})`, async () => {
      const { broker, store } = await make();
      const app = await startPresenceApp(broker, store);
      apps.push(app);
      const watcher = await watch(app.url);
      const anonymous = await openStream(`${app.url}/events?topic=*&envelope=1`);
      streams.push(anonymous);
      const marker = await broker.publish({ topic: "news", data: "before" });

      const leave = app.presence.join({
        subscriber: ANN,
        topics: [BOOKS, "news"],
        payload: { name: "Ann", admin: false },
      });
      await watcher.until("two active updates", (s) => subscriptionUpdates(s).length === 2);
      leave();
      await watcher.until("two ended updates", (s) => subscriptionUpdates(s).length === 4);

      const updates = subscriptionUpdates(watcher);
      const document = (topic: string, id: string, active: boolean) => ({
        "@context": "https://mercure.rocks/",
        id,
        type: "Subscription",
        subscriber: ANN,
        topic,
        active,
        payload: { admin: false, name: "Ann" },
      });
      expect(updates.slice(0, 2).map((u) => u.document)).toEqual(
        expect.arrayContaining([document(BOOKS, BOOKS_ANN, true), document("news", NEWS_ANN, true)]),
      );
      expect(updates.slice(2).map((u) => u.document)).toEqual(
        expect.arrayContaining([document(BOOKS, BOOKS_ANN, false), document("news", NEWS_ANN, false)]),
      );
      for (const u of updates) expect(u.topic).toBe(u.document.id);
      // Private: a stream without a token never sees them, only the public marker.
      await anonymous.until("the marker", (s) => s.events.length >= 1);
      await broker.publish({ topic: "news", data: "after" });
      await anonymous.until("the second marker", (s) => s.events.length >= 2);
      expect(anonymous.events.map((e) => (JSON.parse(e.data) as { data: string }).data)).toEqual(["before", "after"]);

      // Replayable like any update: a client resuming from before the join gets all four.
      const resumed = await watch(app.url, { "last-event-id": marker.event.id });
      await resumed.until("the replay", (s) => subscriptionUpdates(s).length === 4);
      expect(subscriptionUpdates(resumed).map((u) => u.id)).toEqual(updates.map((u) => u.id));
    });
  }

  it("announces the end only after the start, even when the subscriber leaves at once", async () => {
    const app = await start();
    const watcher = await watch(app.url);
    app.presence.join({ subscriber: BOB, topics: ["news"] })();
    await watcher.until("both updates", (s) => subscriptionUpdates(s).length === 2);
    expect(subscriptionUpdates(watcher).map((u) => u.document.active)).toEqual([true, false]);
    // No payload in the token: no payload key, as v0.24.2 omits it.
    expect(subscriptionUpdates(watcher)[0]?.document).not.toHaveProperty("payload");
  });

  it("formats the update's JSON as v0.24.2 does: two-space indent, HTML characters escaped", async () => {
    const app = await start();
    const watcher = await watch(app.url);
    app.presence.join({ subscriber: ANN, topics: ["a<b>&c"], payload: { z: 1, a: "<x>" } });
    await watcher.until("the update", (s) => subscriptionUpdates(s).length === 1);
    const data = (JSON.parse(watcher.events[0]?.data as string) as { data: string }).data;
    expect(data).toBe(
      [
        "{",
        '  "@context": "https://mercure.rocks/",',
        `  "id": "/.well-known/mercure/subscriptions/a%3Cb%3E%26c/urn%3Auuid%3Abb3de268-05b0-4c65-b44e-8f9acefc29d6",`,
        '  "type": "Subscription",',
        `  "subscriber": "${ANN}",`,
        '  "topic": "a\\u003cb\\u003e\\u0026c",',
        '  "active": true,',
        '  "payload": {',
        '    "a": "\\u003cx\\u003e",',
        '    "z": 1',
        "  }",
        "}",
      ].join("\n"),
    );
  });

  it("ends every subscription still registered when the registry closes", async () => {
    const app = await start();
    const watcher = await watch(app.url);
    app.presence.join({ subscriber: ANN, topics: ["news"] });
    await watcher.until("the start", (s) => subscriptionUpdates(s).length === 1);
    await app.presence.close();
    await watcher.until("the end", (s) => subscriptionUpdates(s).length === 2);
    expect(subscriptionUpdates(watcher)[1]?.document).toMatchObject({ subscriber: ANN, active: false });
  });
});

describe("GET /.well-known/mercure/subscriptions", () => {
  it("lists every active subscription in v0.24.2's JSON-LD shape, with lastEventID as ETag", async () => {
    const app = await start();
    app.presence.join({ subscriber: ANN, topics: [BOOKS, "news"], payload: { name: "Ann" } });
    app.presence.join({ subscriber: BOB, topics: ["news"] });
    await waitFor("four updates", () => app.published.length === 3);

    const res = await getSubscriptions(`${app.url}${PATH}?x=1`);
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toBe("application/ld+json");
    const body = res.json as { lastEventID: string; subscriptions: unknown[] };
    expect(res.headers.etag).toBe(body.lastEventID);
    expect(body).toEqual({
      "@context": "https://mercure.rocks/",
      id: `${PATH}?x=1`,
      type: "Subscriptions",
      lastEventID: expect.any(String),
      subscriptions: expect.arrayContaining([
        { id: BOOKS_ANN, type: "Subscription", subscriber: ANN, topic: BOOKS, active: true, payload: { name: "Ann" } },
        { id: NEWS_ANN, type: "Subscription", subscriber: ANN, topic: "news", active: true, payload: { name: "Ann" } },
        { id: NEWS_BOB, type: "Subscription", subscriber: BOB, topic: "news", active: true },
      ]),
    });
    expect(body.subscriptions).toHaveLength(3);
    expect(res.body.startsWith('{\n  "@context": "https://mercure.rocks/",\n  "id": ')).toBe(true);
  });

  it("lists an empty collection with lastEventID earliest before any update", async () => {
    const app = await start();
    const res = await getSubscriptions(`${app.url}${PATH}`);
    expect(res.json).toEqual({
      "@context": "https://mercure.rocks/",
      id: PATH,
      type: "Subscriptions",
      lastEventID: "earliest",
      subscriptions: [],
    });
  });

  it("lists one topic selector's subscriptions: the selector exactly, escaped in the path", async () => {
    const app = await start();
    app.presence.join({ subscriber: ANN, topics: [BOOKS, "news"] });
    app.presence.join({ subscriber: BOB, topics: ["news", "https://example.com/books/1"] });
    const escaped = encodeURIComponent(BOOKS);
    const res = await getSubscriptions(`${app.url}${PATH}/${escaped}`);
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({
      id: `${PATH}/${escaped}`,
      type: "Subscriptions",
      subscriptions: [{ id: BOOKS_ANN, subscriber: ANN, topic: BOOKS }],
    });
    const news = (await getSubscriptions(`${app.url}${PATH}/news`)).json as { subscriptions: { subscriber: string }[] };
    expect(news.subscriptions.map((s) => s.subscriber).sort()).toEqual([BOB, ANN].sort());
    // Go's QueryUnescape: "+" is a space.
    app.presence.join({ subscriber: "urn:x", topics: ["a b"] });
    const spaced = (await getSubscriptions(`${app.url}${PATH}/a+b`)).json as { subscriptions: { topic: string }[] };
    expect(spaced.subscriptions.map((s) => s.topic)).toEqual(["a b"]);
  });

  it("answers one subscription with its context and lastEventID, and 404 once it has ended", async () => {
    const app = await start();
    const leave = app.presence.join({ subscriber: ANN, topics: [BOOKS], payload: { name: "Ann" } });
    await waitFor("the update", () => app.published.length === 1);
    const res = await getSubscriptions(`${app.url}${BOOKS_ANN}`);
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toBe("application/ld+json");
    expect(res.json).toEqual({
      "@context": "https://mercure.rocks/",
      id: BOOKS_ANN,
      type: "Subscription",
      subscriber: ANN,
      topic: BOOKS,
      active: true,
      lastEventID: res.headers.etag,
      payload: { name: "Ann" },
    });
    expect(Object.keys(res.json as object)).toEqual([
      "@context",
      "id",
      "type",
      "subscriber",
      "topic",
      "active",
      "lastEventID",
      "payload",
    ]);

    leave();
    const gone = await getSubscriptions(`${app.url}${BOOKS_ANN}`);
    expect(gone.status).toBe(404);
    expect(gone.json).toMatchObject({ code: "HERALD_SUBSCRIPTION_NOT_FOUND" });
    expect((gone.json as { message: string }).message).toContain(ANN);
  });

  it("answers 404 for a subscriber that has no such selector, and for paths of another shape", async () => {
    const app = await start();
    app.presence.join({ subscriber: ANN, topics: ["news"] });
    const otherTopic = await getSubscriptions(`${app.url}${PATH}/sport/${encodeURIComponent(ANN)}`);
    expect(otherTopic.status).toBe(404);
    expect(otherTopic.json).toMatchObject({ code: "HERALD_SUBSCRIPTION_NOT_FOUND" });
    for (const path of [`${PATH}/news/a/b`, `${PATH}/`, `${PATH}//x`]) {
      const res = await getSubscriptions(`${app.url}${path}`);
      expect(res.status, path).toBe(404);
      expect(res.json, path).toMatchObject({ code: "HERALD_NOT_FOUND" });
    }
  });

  it("refuses a malformed escape with a 400 in the JSON error shape", async () => {
    const app = await start();
    for (const bad of ["news%zz", "news%ff"]) {
      const res = await getSubscriptions(`${app.url}${PATH}/${bad}`);
      expect(res.status).toBe(400);
      expect((res.json as { message: string }).message).toContain("is not a valid url component");
    }
  });

  it("answers 304 to If-None-Match with the current ETag, and 200 once a subscription changed", async () => {
    const app = await start();
    app.presence.join({ subscriber: ANN, topics: ["news"] });
    await waitFor("the update", () => app.published.length === 1);
    const first = await getSubscriptions(`${app.url}${PATH}`);
    const etag = first.headers.etag as string;
    expect(etag).toBe((first.json as { lastEventID: string }).lastEventID);
    for (const tag of [etag, `"${etag}"`, `W/"${etag}"`]) {
      const cached = await getSubscriptions(`${app.url}${PATH}`, ["*"], { "if-none-match": tag });
      expect(cached.status, tag).toBe(304);
      expect(cached.body).toBe("");
    }
    app.presence.join({ subscriber: BOB, topics: ["news"] });
    await waitFor("the second update", () => app.published.length === 2);
    const changed = await getSubscriptions(`${app.url}${PATH}`, ["*"], { "if-none-match": etag });
    expect(changed.status).toBe(200);
    expect((changed.json as { subscriptions: unknown[] }).subscriptions).toHaveLength(2);
  });

  it("needs a subscriber token whose mercure.subscribe covers the requested URL", async () => {
    const app = await start();
    const url = `${app.url}${PATH}`;
    const missing = await getSubscriptions(url, null);
    expect(missing.status).toBe(401);
    expect(missing.json).toMatchObject({ code: "HERALD_TOKEN_MISSING" });
    const invalid = await getSubscriptions(url, null, { authorization: "Bearer not.a.jwt" });
    expect(invalid.status).toBe(401);
    expect(invalid.json).toMatchObject({ code: "HERALD_TOKEN_INVALID" });
    const otherTopic = await getSubscriptions(url, ["news"]);
    expect(otherTopic.status).toBe(403);
    expect(otherTopic.json).toMatchObject({ code: "HERALD_TOPIC_FORBIDDEN" });

    // An exact URL covers that URL only.
    expect((await getSubscriptions(url, [PATH])).status).toBe(200);
    expect((await getSubscriptions(`${url}/news`, [PATH])).status).toBe(403);
    expect((await getSubscriptions(`${url}/news`, [`${PATH}/news`])).status).toBe(200);
  });

  it("takes the token from the authorization query parameter or the mercureAuthorization cookie", async () => {
    const app = await start();
    const token = await hs256({ subscribe: ["*"] });
    const query = await request(`${app.url}${PATH}?authorization=${token}`);
    expect(query.statusCode).toBe(200);
    await query.body.dump();
    const cookie = await request(`${app.url}${PATH}`, { headers: { cookie: `mercureAuthorization=${token}` } });
    expect(cookie.statusCode).toBe(200);
    await cookie.body.dump();
  });
});
