import { request } from "undici";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Config } from "../../src/config.js";
import { type HeraldProcess, runHerald } from "../helpers/process.js";
import { startServer, type TestServer } from "../helpers/server.js";
import { type OpenStream, openStream } from "../helpers/stream.js";
import { expOf, hs256, keyPair, SECRET, type Signer, type TokenSpec } from "../helpers/tokens.js";
import { waitFor } from "../helpers/wait.js";

let server: TestServer;
let es256: Signer;
beforeAll(async () => {
  es256 = await keyPair("ES256");
});
afterEach(() => server?.close());

async function start(overrides: Partial<Config> = {}): Promise<TestServer> {
  server = await startServer({ subscriberJwtKey: SECRET, ...overrides });
  return server;
}

/** Opens a stream and waits until it is subscribed (its retry line has arrived). */
async function listen(query: string, headers: Record<string, string> = {}): Promise<OpenStream> {
  const stream = await openStream(`${server.url}/events?${query}`, headers);
  expect(stream.status, `GET /events?${query}`).toBe(200);
  await stream.until("the stream to open", (s) => s.retry !== undefined);
  return stream;
}

const bearer = async (spec: TokenSpec) => ({ authorization: `Bearer ${await hs256(spec)}` });
/** `/stats` needs a token that may read every topic once SUBSCRIBER_JWT_KEY is set. */
const stats = async () => server.stats(await bearer({ subscribe: ["*"] }));

describe("a subscriber's token", () => {
  it("comes from the Authorization header, the authorization query parameter or the herald_token cookie", async () => {
    await start();
    const token = await hs256({ subscribe: ["vip"] });
    const viaHeader = await listen("topic=vip", { authorization: `Bearer ${token}` });
    const viaQuery = await listen(`topic=vip&authorization=${token}`);
    const viaCookie = await listen("topic=vip", { cookie: `theme=dark; herald_token=${token}` });
    const anonymous = await listen("topic=vip");
    await server.publish({ topic: "vip", data: "secret", private: true });
    await server.publish({ topic: "vip", data: "public" });
    for (const stream of [viaHeader, viaQuery, viaCookie]) {
      expect((await stream.take(2)).map((e) => e.data)).toEqual(["secret", "public"]);
    }
    expect((await anonymous.take(1)).map((e) => e.data)).toEqual(["public"]);
    for (const stream of [viaHeader, viaQuery, viaCookie, anonymous]) stream.close();
  });

  it("is checked before the stream opens: a bad one gets a 401 and no stream", async () => {
    await start();
    const cases: [Record<string, string>, string, string][] = [
      [{ authorization: "Bearer nonsense" }, "", "HERALD_TOKEN_INVALID"],
      [
        {},
        `&authorization=${await hs256({ subscribe: ["*"] }, "not-the-key-but-32-bytes-long-too")}`,
        "HERALD_TOKEN_INVALID",
      ],
      [{ cookie: `herald_token=${await hs256({ subscribe: ["*"], expiresInS: -5 })}` }, "", "HERALD_TOKEN_EXPIRED"],
      [{ authorization: `Bearer ${await es256.sign({ subscribe: ["*"] })}` }, "", "HERALD_TOKEN_INVALID"],
    ];
    for (const [headers, query, code] of cases) {
      const res = await request(`${server.url}/events?topic=t${query}`, { headers });
      expect(res.statusCode).toBe(401);
      expect(res.headers["content-type"]).toContain("application/json");
      expect(res.headers["www-authenticate"]).toBe('Bearer realm="herald"');
      expect(((await res.body.json()) as { code: string }).code).toBe(code);
    }
    expect((await stats()).connections).toBe(0);
  });

  it("works with an ES256 SUBSCRIBER_JWT_KEY", async () => {
    await start({ subscriberJwtKey: es256.publicPem });
    const stream = await listen("topic=vip", { authorization: `Bearer ${await es256.sign({ subscribe: ["vip"] })}` });
    await server.publish({ topic: "vip", data: "secret", private: true });
    expect((await stream.take(1))[0]?.data).toBe("secret");
    stream.close();
  });

  it("is ignored when SUBSCRIBER_JWT_KEY is not set: the stream opens and gets public events", async () => {
    await start({ subscriberJwtKey: undefined });
    const stream = await listen("topic=t", { authorization: "Bearer not-checked" });
    await server.publish({ topic: "t", data: "public" });
    expect((await stream.take(1))[0]?.data).toBe("public");
    stream.close();
  });
});

describe("private events", () => {
  it("reach only streams whose token covers the topic; public events reach every subscriber", async () => {
    await start();
    const streams = {
      anonymous: await listen("topic=a"),
      coversA: await listen("topic=a&topic=b", await bearer({ subscribe: ["a"] })),
      coversOther: await listen("topic=a", await bearer({ subscribe: ["b"] })),
      pattern: await listen("topic=a&topic=orders/1", await bearer({ subscribe: ["orders/{id}"] })),
      allAnonymous: await listen("topic=*"),
      allWithPattern: await listen("topic=*", await bearer({ subscribe: ["orders/{+rest}"] })),
      allWithStar: await listen("topic=*", await bearer({ subscribe: ["*"] })),
    };
    await server.publish({ topic: "a", data: "private a", private: true });
    await server.publish({ topic: "b", data: "private b", private: true });
    await server.publish({ topic: "orders/1", data: "private order", private: true });
    await server.publish({ topic: "orders/1/items", data: "private item", private: true });
    // A public event on every topic last: anything wrongly delivered would have arrived before it.
    for (const topic of ["a", "b", "orders/1"]) await server.publish({ topic, data: `public ${topic}` });

    const expected: Record<keyof typeof streams, string[]> = {
      anonymous: ["public a"],
      coversA: ["private a", "public a", "public b"],
      coversOther: ["public a"],
      pattern: ["private order", "public a", "public orders/1"],
      allAnonymous: ["public a", "public b", "public orders/1"],
      allWithPattern: ["private order", "private item", "public a", "public b", "public orders/1"],
      allWithStar: [
        "private a",
        "private b",
        "private order",
        "private item",
        "public a",
        "public b",
        "public orders/1",
      ],
    };
    for (const [name, stream] of Object.entries(streams)) {
      const want = expected[name as keyof typeof streams];
      await stream.until(`${name}'s last event`, (s) => s.events.at(-1)?.data === want.at(-1));
      expect(
        stream.events.map((e) => e.data),
        name,
      ).toEqual(want);
      stream.close();
    }
    // `delivered` counts only what was written.
    expect((await stats()).delivered).toBe(Object.values(expected).flat().length);
  });

  it("are never replayed to a stream that could not have received them live", async () => {
    await start();
    const first = await server.publish({ topic: "r", data: "public 1" });
    await server.publish({ topic: "r", data: "private 2", private: true });
    await server.publish({ topic: "q", data: "private q", private: true });
    await server.publish({ topic: "r", data: "public 3" });
    const resume = { "last-event-id": first.id };
    const anonymous = await listen("topic=r&topic=q", resume);
    const covered = await listen("topic=r&topic=q", { ...resume, ...(await bearer({ subscribe: ["r"] })) });
    const everything = await listen("topic=*", { ...resume, ...(await bearer({ subscribe: ["*"] })) });
    const anonymousAll = await listen("topic=*", resume);
    await server.publish({ topic: "r", data: "live end" });
    const received = async (s: OpenStream) => {
      await s.until("the live event", (x) => x.events.at(-1)?.data === "live end");
      s.close();
      return s.events.map((e) => e.data);
    };
    expect(await received(anonymous)).toEqual(["public 3", "live end"]);
    expect(await received(covered)).toEqual(["private 2", "public 3", "live end"]);
    expect(await received(everything)).toEqual(["private 2", "private q", "public 3", "live end"]);
    expect(await received(anonymousAll)).toEqual(["public 3", "live end"]);
  });
});

describe("a query parameter given twice", () => {
  it("is a 400 naming it, for authorization and lastEventId, before any stream opens", async () => {
    await start();
    const token = await hs256({ subscribe: ["t"] });
    for (const [name, query] of [
      ["authorization", `topic=t&authorization=${token}&authorization=${token}`],
      ["lastEventId", "topic=t&lastEventId=a&lastEventId=b"],
    ] as const) {
      const res = await request(`${server.url}/events?${query}`);
      expect(res.statusCode, name).toBe(400);
      expect(await res.body.json()).toMatchObject({
        code: "HERALD_INVALID_QUERY",
        message: `Give ${name} once, not 2 times`,
      });
    }
    expect((await stats()).connections).toBe(0);
  });
});

describe("token expiry", () => {
  it("ends a stream when its token expires, not before, and frees it", async () => {
    await start();
    const token = await hs256({ subscribe: ["t"], expiresInS: 2 });
    const expMs = expOf(token) * 1_000;
    const stream = await listen("topic=t", { authorization: `Bearer ${token}` });
    const forever = await listen("topic=t", await bearer({ subscribe: ["t"] }));
    await server.publish({ topic: "t", data: "before expiry", private: true });
    expect((await stream.take(1))[0]?.data).toBe("before expiry");
    await stream.until("the stream to end at its token's exp", (s) => s.ended, 5_000);
    // Seen after the end: the server cannot have ended it before its exp second came.
    expect(Date.now()).toBeGreaterThanOrEqual(expMs);
    expect(stream.endedBy).toBe("server");
    // Nothing after the event it was entitled to but the token-expired notice.
    expect(stream.events.map((e) => e.type)).toEqual(["message", "token-expired"]);
    expect(stream.events[0]?.data).toBe("before expiry");
    await waitFor("the server to free it", async () => (await stats()).connections === 1);
    await server.publish({ topic: "t", data: "after expiry", private: true });
    await forever.take(2);
    expect(forever.ended).toBe(false);
    forever.close();
  });
});

describe("GET /stats with SUBSCRIBER_JWT_KEY", () => {
  it("needs a token whose mercure.subscribe holds *, from any of the token places", async () => {
    await start();
    const stats = (headers: Record<string, string>, query = "") => request(`${server.url}/stats${query}`, { headers });
    const none = await stats({});
    expect(none.statusCode).toBe(401);
    expect(await none.body.json()).toMatchObject({ code: "HERALD_TOKEN_MISSING" });
    const partial = await stats(await bearer({ subscribe: ["a"] }));
    expect(partial.statusCode).toBe(403);
    expect(await partial.body.json()).toMatchObject({ code: "HERALD_TOPIC_FORBIDDEN" });
    const token = await hs256({ subscribe: ["*"] });
    for (const [headers, query] of [
      [{ cookie: `herald_token=${token}` }, ""],
      [{}, `?authorization=${token}`],
    ] as const) {
      const ok = await stats(headers, query);
      expect(ok.statusCode).toBe(200);
      expect(await ok.body.json()).toMatchObject({ connections: 0 });
    }
  });
});

describe("start-up and logs", () => {
  const running: HeraldProcess[] = [];
  afterEach(() => {
    for (const p of running.splice(0)) p.child.kill("SIGKILL");
  });

  it("warns at start-up for each key that is not set, and not for one that is", async () => {
    const open = runHerald({ LOG_LEVEL: "info" });
    running.push(open);
    await open.url;
    expect(open.stdout()).toContain("PUBLISHER_JWT_KEY is not set: anyone who can reach Herald may publish");
    expect(open.stdout()).toContain("SUBSCRIBER_JWT_KEY is not set: private events are refused");
    const locked = runHerald({ LOG_LEVEL: "info", PUBLISHER_JWT_KEY: SECRET });
    running.push(locked);
    await locked.url;
    expect(locked.stdout()).not.toContain("PUBLISHER_JWT_KEY is not set");
    expect(locked.stdout()).toContain("SUBSCRIBER_JWT_KEY is not set");
  });

  it("never writes a token sent in the query string to the log", async () => {
    // Requests are logged at debug.
    const herald = runHerald({ LOG_LEVEL: "debug", SUBSCRIBER_JWT_KEY: SECRET });
    running.push(herald);
    const url = await herald.url;
    const token = await hs256({ subscribe: ["*"] });
    const stream = await openStream(`${url}/events?topic=t&authorization=${token}`);
    await stream.until("the stream to open", (s) => s.retry !== undefined);
    stream.close();
    await waitFor("the request to be logged", () => herald.stdout().includes("authorization=[redacted]"));
    expect(herald.stdout()).not.toContain(token);
    expect(herald.stdout()).not.toContain(token.split(".")[2]);
  });
});
