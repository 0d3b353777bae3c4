import { EventSource } from "eventsource";
import { request } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import type { Config } from "../../src/config.js";
import type { MercureSubscriptionInfo } from "../../src/mercure/mercure-routes.js";
import { startServer, type TestServer } from "../helpers/server.js";
import { type OpenStream, openStream } from "../helpers/stream.js";
import { hs256, SECRET, type TokenSpec } from "../helpers/tokens.js";
import { waitFor } from "../helpers/wait.js";

const HUB = "/.well-known/mercure";
let server: TestServer;
afterEach(() => server?.close());

async function start(
  overrides: Partial<Config> = {},
  onMercureSubscribe?: (info: MercureSubscriptionInfo) => () => void,
) {
  server = await startServer(
    { publisherJwtKey: SECRET, subscriberJwtKey: SECRET, ...overrides },
    0,
    onMercureSubscribe ? { onMercureSubscribe } : {},
  );
  return server;
}

const token = (spec: TokenSpec) => hs256(spec);
const bearer = async (spec: TokenSpec) => ({ authorization: `Bearer ${await token(spec)}` });

/** `?topic=a&topic=b...`, each value encoded. */
function query(topics: string[], extra = ""): string {
  return topics.map((t) => `topic=${encodeURIComponent(t)}`).join("&") + extra;
}

/** Subscribes to the hub and waits until the stream is open (its retry line has arrived). */
async function subscribe(topics: string[], headers: Record<string, string> = {}, extra = ""): Promise<OpenStream> {
  const stream = await openStream(`${server.url}${HUB}?${query(topics, extra)}`, headers);
  expect(stream.status, `subscribe ${topics.join(" ")}`).toBe(200);
  await stream.until("the stream to open", (s) => s.retry !== undefined);
  return stream;
}

/** POSTs a Mercure publish form; `fields` in order, repeated names allowed. */
async function publish(fields: [string, string][], headers: Record<string, string> | undefined = undefined) {
  const res = await request(`${server.url}${HUB}`, {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      ...(headers ?? (await bearer({ publish: ["*"] }))),
    },
    body: new URLSearchParams(fields).toString(),
  });
  const text = await res.body.text();
  return { status: res.statusCode, type: res.headers["content-type"], text };
}

describe("Mercure subscribe and publish", () => {
  it("delivers an update with several topics once to a subscriber of any of them, answering 200 text/plain with the id", async () => {
    await start();
    const stream = await subscribe(["https://example.com/books/1", "https://example.com/authors/7"]);
    const res = await publish([
      ["topic", "https://example.com/books/1"],
      ["topic", "https://example.com/authors/7"],
      ["data", '{"title":"Dune"}'],
      ["id", "urn:uuid:book-1-v2"],
      ["type", "book.updated"],
      ["retry", "5000"],
    ]);
    expect(res).toMatchObject({ status: 200, text: "urn:uuid:book-1-v2" });
    expect(res.type).toMatch(/^text\/plain/);
    const [event] = await stream.take(1);
    expect(event).toMatchObject({ lastEventId: "urn:uuid:book-1-v2", type: "book.updated", data: '{"title":"Dune"}' });
    expect(stream.raw).toContain("retry: 5000");
    // One more update proves the first was not sent twice.
    await publish([
      ["topic", "https://example.com/authors/7"],
      ["data", "next"],
    ]);
    await stream.until("the second update", (s) => s.events.length === 2);
    expect(stream.events.map((e) => e.data)).toEqual(['{"title":"Dune"}', "next"]);
    stream.close();
  });

  it("matches URI templates as Mercure does: {id} one segment, {+path} across segments, exact topics, *", async () => {
    await start();
    const one = await subscribe(["https://example.com/books/{id}"]);
    const deep = await subscribe(["https://example.com/{+path}"]);
    const all = await subscribe(["*"]);
    for (const topic of ["https://example.com/books/1", "https://example.com/books/1/reviews", "other"]) {
      await publish([
        ["topic", topic],
        ["data", topic],
      ]);
    }
    await all.until("every update", (s) => s.events.length === 3);
    await deep.until("two updates", (s) => s.events.length === 2);
    expect(deep.events.map((e) => e.data)).toEqual([
      "https://example.com/books/1",
      "https://example.com/books/1/reviews",
    ]);
    expect(one.events.map((e) => e.data)).toEqual(["https://example.com/books/1"]);
    for (const s of [one, deep, all]) s.close();
  });

  it("shows each distinct selector once in /stats, whatever the number of subscribers", async () => {
    await start();
    const streams = [await subscribe(["a/{x}"]), await subscribe(["a/{x}", "b"]), await subscribe(["b"])];
    const stats = await server.stats(await bearer({ subscribe: ["*"] }));
    expect(stats.topics).toEqual({ "a/{x}": 2, b: 2 });
    for (const s of streams) s.close();
  });

  it("works with the eventsource client, which sees the update in onmessage", async () => {
    await start();
    const source = new EventSource(`${server.url}${HUB}?${query(["https://example.com/chat/{room}"])}`);
    try {
      await new Promise((resolve, reject) => {
        source.onopen = resolve;
        source.onerror = reject;
      });
      const got = new Promise<MessageEvent>((resolve) => {
        source.onmessage = resolve;
      });
      await publish([
        ["topic", "https://example.com/chat/lobby"],
        ["data", "hi"],
        ["id", "m1"],
      ]);
      const message = await got;
      expect({ data: message.data, id: message.lastEventId }).toEqual({ data: "hi", id: "m1" });
    } finally {
      source.close();
    }
  });

  it("refuses a subscription without topic or with more than 1000 selectors, with a 400 that says so", async () => {
    await start();
    const none = await request(`${server.url}${HUB}`);
    expect(none.statusCode).toBe(400);
    expect(await none.body.json()).toMatchObject({
      code: "HERALD_INVALID_QUERY",
      message: expect.stringContaining('Missing "topic"'),
    });
    const many = await request(`${server.url}${HUB}?${query(Array.from({ length: 1001 }, (_, i) => `t${i}`))}`);
    expect(many.statusCode).toBe(400);
    expect(await many.body.json()).toMatchObject({ code: "HERALD_TOO_MANY_TOPICS" });
  });

  it("refuses bad publishes with 400s a curl user can act on", async () => {
    await start();
    const cases: [[string, string][], RegExp][] = [
      [[["data", "x"]], /Missing "topic"/],
      [[["topic", "a\nb"]], /Invalid topic/],
      [
        [
          ["topic", "a"],
          ["retry", "soon"],
        ],
        /retry must be a whole number/,
      ],
      [
        [
          ["topic", "a"],
          ["id", "a\rb"],
        ],
        /id must be/,
      ],
      [
        [
          ["topic", "a"],
          ["type", "x\ny"],
        ],
        /type must be/,
      ],
      [
        [
          ["topic", "a"],
          ["data", "1"],
          ["data", "2"],
        ],
        /Give the data field once/,
      ],
    ];
    for (const [fields, message] of cases) {
      const res = await publish(fields);
      expect(res.status, JSON.stringify(fields)).toBe(400);
      expect(JSON.parse(res.text).message).toMatch(message);
    }
    const json = await request(`${server.url}${HUB}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(await bearer({ publish: ["*"] })) },
      body: '{"topic":"a"}',
    });
    expect(json.statusCode).toBe(415);
  });

  it("sends Mercure's no-cache headers on the stream", async () => {
    await start();
    const stream = await subscribe(["a"]);
    expect(stream.headers).toMatchObject({
      "content-type": expect.stringMatching(/^text\/event-stream/),
      "cache-control": "private, no-cache, no-store, must-revalidate, max-age=0",
      "x-accel-buffering": "no",
    });
    stream.close();
  });
});

describe("Mercure authorization", () => {
  it("publishes only when mercure.publish covers every topic of the update (403 otherwise)", async () => {
    await start();
    const headers = await bearer({ publish: ["https://example.com/books/{id}"] });
    const covered = await publish(
      [
        ["topic", "https://example.com/books/1"],
        ["data", "x"],
      ],
      headers,
    );
    expect(covered.status).toBe(200);
    const partly = await publish(
      [
        ["topic", "https://example.com/books/1"],
        ["topic", "https://example.com/secret"],
        ["data", "x"],
      ],
      headers,
    );
    expect(partly.status).toBe(403);
    expect(JSON.parse(partly.text)).toMatchObject({
      code: "HERALD_TOPIC_FORBIDDEN",
      message: expect.stringContaining("secret"),
    });
    const none = await publish([["topic", "a"]], {});
    expect(none.status).toBe(401);
  });

  it("reserves topics containing /.well-known/mercure: 403 on both front doors", async () => {
    await start();
    const res = await publish([["topic", "https://example.com/.well-known/mercure/subscriptions/x"]]);
    expect(res.status).toBe(403);
    expect(JSON.parse(res.text)).toMatchObject({ code: "HERALD_TOPIC_RESERVED" });
    const native = await request(`${server.url}/events`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(await bearer({ publish: ["*"] })) },
      body: JSON.stringify({ topic: ["ok", "/.well-known/mercure/x"], data: 1 }),
    });
    expect(native.statusCode).toBe(403);
  });

  it("accepts the https://mercure.rocks/ claim key and tokens without exp", async () => {
    await start();
    const { SignJWT } = await import("jose");
    const namespaced = await new SignJWT({ "https://mercure.rocks/": { publish: ["a"], subscribe: ["a"] } })
      .setProtectedHeader({ alg: "HS256" })
      .sign(new TextEncoder().encode(SECRET));
    const stream = await subscribe(["a"], { authorization: `Bearer ${namespaced}` });
    expect(
      (
        await publish(
          [
            ["topic", "a"],
            ["data", "p"],
            ["private", "on"],
          ],
          { authorization: `Bearer ${namespaced}` },
        )
      ).status,
    ).toBe(200);
    await stream.until("the private update", (s) => s.events.length === 1);
    stream.close();
  });

  it("sends a private update to a subscriber whose mercure.subscribe covers any of its topics", async () => {
    await start();
    const anonymous = await subscribe(["https://example.com/books/{id}"]);
    const coversAlternate = await subscribe(
      ["https://example.com/books/{id}"],
      await bearer({ subscribe: ["https://example.com/users/7"] }),
    );
    const coversNothing = await subscribe(
      ["https://example.com/books/{id}"],
      await bearer({ subscribe: ["https://example.com/users/8"] }),
    );
    const probe = await subscribe(["probe"]);
    await publish([
      ["topic", "https://example.com/books/1"],
      ["topic", "https://example.com/users/7"],
      ["data", "secret"],
      ["private", "on"],
    ]);
    await publish([
      ["topic", "https://example.com/books/1"],
      ["data", "public"],
    ]);
    await publish([
      ["topic", "probe"],
      ["data", "done"],
    ]);
    await probe.until("the probe", (s) => s.events.length === 1);
    await coversAlternate.until("two updates", (s) => s.events.length === 2);
    await anonymous.until("the public update", (s) => s.events.length === 1);
    await coversNothing.until("the public update", (s) => s.events.length === 1);
    expect(coversAlternate.events.map((e) => e.data)).toEqual(["secret", "public"]);
    expect(anonymous.events.map((e) => e.data)).toEqual(["public"]);
    expect(coversNothing.events.map((e) => e.data)).toEqual(["public"]);
    for (const s of [anonymous, coversAlternate, coversNothing, probe]) s.close();
  });

  it("reads a subscriber's token from the authorization query parameter and the mercureAuthorization cookie", async () => {
    await start();
    const jwt = await token({ subscribe: ["vip"] });
    const viaQuery = await subscribe(["vip"], {}, `&authorization=${jwt}`);
    const viaCookie = await subscribe(["vip"], { cookie: `mercureAuthorization=${jwt}` });
    await publish([
      ["topic", "vip"],
      ["data", "p"],
      ["private", "1"],
    ]);
    await viaQuery.until("the private update", (s) => s.events.length === 1);
    await viaCookie.until("the private update", (s) => s.events.length === 1);
    viaQuery.close();
    viaCookie.close();
  });

  it("answers 401 to a bad token even where anonymous subscribers are allowed", async () => {
    await start();
    const res = await request(`${server.url}${HUB}?topic=a`, { headers: { authorization: "Bearer not.a.jwt" } });
    expect(res.statusCode).toBe(401);
  });

  it("with ANONYMOUS_SUBSCRIBERS=false, refuses streams without a token on both front doors", async () => {
    await start({ anonymousSubscribers: false });
    for (const path of [`${HUB}?topic=a`, "/events?topic=a"]) {
      const res = await request(`${server.url}${path}`);
      expect(res.statusCode, path).toBe(401);
      expect(await res.body.json()).toMatchObject({ code: "HERALD_TOKEN_MISSING" });
    }
    const stream = await subscribe(["a"], await bearer({ subscribe: [] }));
    stream.close();
  });

  it("takes a cookie-authenticated publish only from an origin in PUBLISH_ORIGINS", async () => {
    await start({ publishOrigins: ["https://app.example"] });
    const cookie = `mercureAuthorization=${await token({ publish: ["*"] })}`;
    const fromApp = await publish([["topic", "a"]], { cookie, origin: "https://app.example" });
    expect(fromApp.status).toBe(200);
    const viaReferer = await publish([["topic", "a"]], { cookie, referer: "https://app.example/page?x=1" });
    expect(viaReferer.status).toBe(200);
    const elsewhere = await publish([["topic", "a"]], { cookie, origin: "https://evil.example" });
    expect(elsewhere.status).toBe(403);
    expect(JSON.parse(elsewhere.text)).toMatchObject({ code: "HERALD_PUBLISH_ORIGIN" });
    const noOrigin = await publish([["topic", "a"]], { cookie });
    expect(noOrigin.status).toBe(403);
  });

  it("refuses every cookie-authenticated publish by default, Bearer still works", async () => {
    await start();
    const jwt = await token({ publish: ["*"] });
    expect(
      (await publish([["topic", "a"]], { cookie: `mercureAuthorization=${jwt}`, origin: "http://x" })).status,
    ).toBe(403);
    expect((await publish([["topic", "a"]], { authorization: `Bearer ${jwt}`, origin: "http://x" })).status).toBe(200);
  });
});

describe("Mercure ids", () => {
  it("answers a retry of the same update with its id and does not deliver it twice", async () => {
    await start();
    const stream = await subscribe(["a"]);
    const fields: [string, string][] = [
      ["topic", "a"],
      ["data", "once"],
      ["id", "same"],
    ];
    expect((await publish(fields)).text).toBe("same");
    expect((await publish(fields)).text).toBe("same");
    await publish([
      ["topic", "a"],
      ["data", "after"],
    ]);
    await stream.until("two updates", (s) => s.events.length === 2);
    expect(stream.events.map((e) => e.data)).toEqual(["once", "after"]);
    stream.close();
  });

  it("gives an update whose id is taken by other content an id of Herald's own, and delivers it", async () => {
    await start();
    const stream = await subscribe(["a"]);
    expect(
      (
        await publish([
          ["topic", "a"],
          ["data", "first"],
          ["id", "taken"],
        ])
      ).text,
    ).toBe("taken");
    const second = await publish([
      ["topic", "a"],
      ["data", "second"],
      ["id", "taken"],
    ]);
    expect(second.status).toBe(200);
    expect(second.text).not.toBe("taken");
    await stream.until("two updates", (s) => s.events.length === 2);
    expect(stream.events.map((e) => [e.lastEventId, e.data])).toEqual([
      ["taken", "first"],
      [second.text, "second"],
    ]);
    stream.close();
  });
});

describe("Mercure replay", () => {
  it("resumes from the lastEventID query parameter; the Last-Event-ID header wins over it", async () => {
    await start();
    const ids: string[] = [];
    for (const data of ["1", "2", "3"])
      ids.push(
        (
          await publish([
            ["topic", "https://example.com/b/1"],
            ["data", data],
          ])
        ).text,
      );
    const fromQuery = await subscribe(
      ["https://example.com/b/{id}"],
      {},
      `&lastEventID=${encodeURIComponent(ids[0] as string)}`,
    );
    await fromQuery.until("two replayed updates", (s) => s.events.length === 2);
    expect(fromQuery.events.map((e) => e.data)).toEqual(["2", "3"]);
    const fromHeader = await subscribe(
      ["https://example.com/b/{id}"],
      { "last-event-id": ids[1] as string },
      `&lastEventID=${encodeURIComponent(ids[0] as string)}`,
    );
    await fromHeader.until("one replayed update", (s) => s.events.length === 1);
    expect(fromHeader.events.map((e) => e.data)).toEqual(["3"]);
    fromQuery.close();
    fromHeader.close();
  });

  it("sends Herald's named reset event for an unknown id, which onmessage never sees", async () => {
    await start();
    await publish([
      ["topic", "a"],
      ["data", "x"],
    ]);
    const stream = await subscribe(["a"], { "last-event-id": "never-issued" });
    await stream.until("the reset", (s) => s.events.length === 1);
    expect(stream.events[0]?.type).toBe("reset");
    stream.close();
  });
});

describe("the native API speaks the same topics", () => {
  it("POST /events takes several topics and GET /events takes templates; both front doors see the same events", async () => {
    await start({ publisherJwtKey: undefined });
    const native = await openStream(`${server.url}/events?topic=${encodeURIComponent("orders/{id}")}`);
    await native.until("open", (s) => s.retry !== undefined);
    const mercure = await subscribe(["users/7"]);
    const res = await request(`${server.url}/events`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ topic: ["orders/42", "users/7"], data: "shipped" }),
    });
    expect(res.statusCode).toBe(201);
    expect(await res.body.json()).toMatchObject({ topic: "orders/42", alternates: ["users/7"] });
    await native.until("the event", (s) => s.events.length === 1);
    await mercure.until("the event", (s) => s.events.length === 1);
    native.close();
    mercure.close();
  });

  it("takes topics with ?, #, %, spaces and braces up to 1024 characters", async () => {
    await start({ publisherJwtKey: undefined });
    const topic = "https://example.com/search?q=a b#frag%20{x}";
    const stream = await openStream(`${server.url}/events?topic=${encodeURIComponent(topic)}`);
    await stream.until("open", (s) => s.retry !== undefined);
    await server.publish({ topic, data: "found" });
    await stream.until("the event", (s) => s.events.length === 1);
    stream.close();
    const long = await request(`${server.url}/events`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ topic: "t".repeat(1024), data: 1 }),
    });
    expect(long.statusCode).toBe(201);
    const tooLong = await request(`${server.url}/events`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ topic: "t".repeat(1025), data: 1 }),
    });
    expect(tooLong.statusCode).toBe(400);
    expect(await tooLong.body.json()).toMatchObject({ code: "HERALD_INVALID_TOPIC" });
  });
});

describe("onSubscribe, for the presence API", () => {
  it("is told of each subscription once it is open, and its cleanup runs when the stream closes", async () => {
    const seen: MercureSubscriptionInfo[] = [];
    let left = 0;
    await start({}, (info) => {
      seen.push(info);
      return () => {
        left++;
      };
    });
    const { SignJWT } = await import("jose");
    const jwt = await new SignJWT({ mercure: { subscribe: ["a"], payload: { user: "ada" } } })
      .setProtectedHeader({ alg: "HS256" })
      .sign(new TextEncoder().encode(SECRET));
    const stream = await subscribe(["a", "b/{x}", "a"], { authorization: `Bearer ${jwt}` }, "&lastEventID=earliest");
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ selectors: ["a", "b/{x}"], payload: { user: "ada" }, lastEventId: "earliest" });
    expect(seen[0]?.subscriberId).toMatch(/^urn:uuid:[0-9a-f-]{36}$/);
    stream.close();
    await waitFor("the cleanup", () => left === 1);
  });
});

describe("CORS on the hub", () => {
  it("allows authorization, cache-control and last-event-id; credentials only for listed origins", async () => {
    await start({ corsOrigin: ["https://app.example"] });
    const preflight = (path: string) =>
      request(`${server.url}${path}`, {
        method: "OPTIONS",
        headers: {
          origin: "https://app.example",
          "access-control-request-method": "POST",
          "access-control-request-headers": "authorization",
        },
      });
    // The hub and the paths below it (the subscriptions API) answer as the Mercure hub does.
    for (const path of [HUB, `${HUB}/subscriptions`]) {
      const answer = await preflight(path);
      expect([path, answer.statusCode, answer.headers]).toMatchObject([
        path,
        204,
        {
          "access-control-allow-origin": "https://app.example",
          "access-control-allow-credentials": "true",
          "access-control-allow-headers": "authorization, cache-control, last-event-id",
        },
      ]);
    }
    // So does an answer to a request itself (here a publish without a token, refused); Herald's own routes keep their headers.
    const publish = await request(`${server.url}${HUB}`, {
      method: "POST",
      headers: { origin: "https://app.example", "content-type": "application/x-www-form-urlencoded" },
      body: "topic=t&data=x",
    });
    await publish.body.dump();
    expect([publish.statusCode, publish.headers["access-control-allow-credentials"]]).toEqual([401, "true"]);
    // And a 404 there (the subscriptions API is off), which the browser must be able to read.
    const missing = await request(`${server.url}${HUB}/subscriptions`, { headers: { origin: "https://app.example" } });
    await missing.body.dump();
    expect([missing.statusCode, missing.headers["access-control-allow-credentials"]]).toEqual([404, "true"]);
    const native = await preflight("/events");
    expect(native.headers["access-control-allow-credentials"]).toBeUndefined();
    expect(native.headers["access-control-allow-headers"]).toBe("Content-Type, Last-Event-ID, Authorization");
    await server.close();
    await start();
    const star = await request(`${server.url}${HUB}`, {
      method: "OPTIONS",
      headers: { origin: "https://x.example", "access-control-request-method": "GET" },
    });
    expect(star.headers["access-control-allow-origin"]).toBe("*");
    expect(star.headers["access-control-allow-credentials"]).toBeUndefined();
  });
});

describe("Mercure presence in the service (SUBSCRIPTIONS=true)", () => {
  it("announces a subscriber's connect and leave to a watcher of the subscriptions topic, and lists it", async () => {
    await start({ subscriptions: true });
    const watcherToken = await bearer({ subscribe: ["/.well-known/mercure/subscriptions{/topic}{/subscriber}"] });
    const watcher = await subscribe(["/.well-known/mercure/subscriptions{/topic}{/subscriber}"], watcherToken);
    const reader = await subscribe(["https://example.com/books/1"]);
    await watcher.until("an active: true update", (s) => s.events.some((e) => e.data.includes('"active": true')));
    const joined = JSON.parse(watcher.events[0]?.data ?? "{}");
    expect(joined).toMatchObject({ type: "Subscription", topic: "https://example.com/books/1", active: true });
    const list = await request(`${server.url}${HUB}/subscriptions`, {
      headers: await bearer({ subscribe: ["*"] }),
    });
    expect(list.statusCode).toBe(200);
    const body = (await list.body.json()) as { subscriptions: { topic: string }[] };
    expect(body.subscriptions.map((s) => s.topic)).toContain("https://example.com/books/1");
    reader.close();
    await watcher.until("an active: false update", (s) => s.events.some((e) => e.data.includes('"active": false')));
    watcher.close();
  });
});
