import { request } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import type { Config } from "../../src/config.js";
import { startServer, type TestServer } from "../helpers/server.js";
import { type OpenStream, openStream } from "../helpers/stream.js";
import { hs256, SECRET } from "../helpers/tokens.js";
import { waitFor } from "../helpers/wait.js";

let server: TestServer;
afterEach(() => server?.close());

async function start(overrides: Partial<Config>): Promise<TestServer> {
  server = await startServer({ retryMs: 2_500, ...overrides });
  return server;
}

async function listen(path: string, headers: Record<string, string> = {}): Promise<OpenStream> {
  const stream = await openStream(`${server.url}${path}`, headers);
  expect(stream.status, path).toBe(200);
  await stream.until("the stream to open", (s) => s.retry !== undefined);
  return stream;
}

/** A refused request: its status, Retry-After and error body. */
async function refused(path: string, headers: Record<string, string> = {}) {
  const res = await request(`${server.url}${path}`, { headers });
  const body = (await res.body.json()) as { code: string; message: string };
  return { status: res.statusCode, retryAfter: res.headers["retry-after"], ...body };
}

describe("MAX_CONNECTIONS", () => {
  it("answers 503 with Retry-After once that many streams of any kind are open, and frees a slot on close", async () => {
    await start({ maxConnections: 2 });
    const events = await listen("/events?topic=a");
    const ticks = await listen("/ticks");
    for (const path of ["/events?topic=b", "/ticks"]) {
      expect(await refused(path)).toMatchObject({
        status: 503,
        retryAfter: "3",
        code: "HERALD_CONNECTION_LIMIT",
        message: expect.stringContaining("maximum of 2 open streams (MAX_CONNECTIONS): retry in 3 s"),
      });
    }
    expect((await server.stats()).connections).toBe(2);
    ticks.close();
    await waitFor("the closed stream to be freed", async () => (await server.stats()).connections === 1);
    const again = await listen("/events?topic=b");
    await server.publish({ topic: "a", data: "still here" });
    expect((await events.take(1))[0]?.data).toBe("still here");
    events.close();
    again.close();
  });
});

describe("MAX_CONNECTIONS_PER_IP", () => {
  it("answers 429 with Retry-After to the address over its limit only, and frees its slots on close", async () => {
    // One trusted hop (the test is the proxy), so the test can speak as two clients.
    await start({ maxConnectionsPerIp: 2, trustProxy: 1 });
    const a = { "x-forwarded-for": "203.0.113.1" };
    const b = { "x-forwarded-for": "203.0.113.2" };
    const a1 = await listen("/events", a);
    const a2 = await listen("/ticks", a);
    expect(await refused("/events", a)).toMatchObject({
      status: 429,
      retryAfter: "3",
      code: "HERALD_IP_CONNECTION_LIMIT",
      message: expect.stringContaining("already has 2 open streams (MAX_CONNECTIONS_PER_IP)"),
    });
    const b1 = await listen("/events", b);
    a1.close();
    await waitFor("a's closed stream to be freed", async () => (await server.stats()).connections === 2);
    const a3 = await listen("/events", a);
    for (const s of [a2, a3, b1]) s.close();
  });

  it("behind one proxy (TRUST_PROXY=1), counts the address the proxy saw, not one the client wrote", async () => {
    await start({ maxConnectionsPerIp: 1, trustProxy: 1 });
    // The attacker (203.0.113.66) writes the victim's address; the proxy appends the real one.
    const attacker = await listen("/events", { "x-forwarded-for": "203.0.113.9, 203.0.113.66" });
    const victim = await listen("/events", { "x-forwarded-for": "203.0.113.9" });
    expect(await refused("/events", { "x-forwarded-for": "203.0.113.7, 203.0.113.66" })).toMatchObject({
      status: 429,
      code: "HERALD_IP_CONNECTION_LIMIT",
    });
    attacker.close();
    victim.close();
  });

  it("counts an IPv6 client by its /64, so rotating addresses within it gains nothing", async () => {
    await start({ maxConnectionsPerIp: 1, trustProxy: 1 });
    const first = await listen("/events", { "x-forwarded-for": "2001:db8:1:2::1" });
    expect((await refused("/events", { "x-forwarded-for": "2001:db8:1:2:ffff::9" })).status).toBe(429);
    const otherNetwork = await listen("/events", { "x-forwarded-for": "2001:db8:1:3::1" });
    first.close();
    otherNetwork.close();
  });

  it("counts the socket's address when no proxy is trusted, whatever X-Forwarded-For says", async () => {
    await start({ maxConnectionsPerIp: 1 });
    const first = await listen("/events", { "x-forwarded-for": "203.0.113.1" });
    expect((await refused("/events", { "x-forwarded-for": "203.0.113.2" })).status).toBe(429);
    first.close();
  });
});

describe("PUBLISH_RATE_LIMIT", () => {
  const post = (headers: Record<string, string> = {}) =>
    request(`${server.url}/events`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify({ topic: "r", data: "x" }),
    });

  it("answers 429 with Retry-After past the limit per minute from one address", async () => {
    await start({ publishRateLimit: 3 });
    for (let i = 0; i < 3; i++) expect((await post()).statusCode).toBe(201);
    const over = await post();
    expect(over.statusCode).toBe(429);
    expect(Number(over.headers["retry-after"])).toBeGreaterThan(0);
    expect(Number(over.headers["retry-after"])).toBeLessThanOrEqual(60);
    expect(await over.body.json()).toMatchObject({
      code: "HERALD_RATE_LIMITED",
      message: expect.stringMatching(
        /More than 3 publishes in a minute from this client \(PUBLISH_RATE_LIMIT\): retry in .*, or have Herald's operator raise PUBLISH_RATE_LIMIT \(0 lifts it\)$/,
      ),
    });
    expect((await server.stats()).published).toBe(3);
  });

  it("counts per token subject when publishers authenticate, so one client cannot use up another's", async () => {
    await start({ publishRateLimit: 2, publisherJwtKey: SECRET });
    const alice = { authorization: `Bearer ${await hs256({ publish: ["*"], sub: "alice" })}` };
    const bob = { authorization: `Bearer ${await hs256({ publish: ["*"], sub: "bob" })}` };
    for (let i = 0; i < 2; i++) expect((await post(alice)).statusCode).toBe(201);
    expect((await post(alice)).statusCode).toBe(429);
    // Another token of the same subject shares the budget.
    const aliceAgain = { authorization: `Bearer ${await hs256({ publish: ["*"], sub: "alice", expiresInS: 99 })}` };
    expect((await post(aliceAgain)).statusCode).toBe(429);
    for (let i = 0; i < 2; i++) expect((await post(bob)).statusCode).toBe(201);
    expect((await post(bob)).statusCode).toBe(429);
  });

  it("is off with 0", async () => {
    await start({ publishRateLimit: 0 });
    for (let i = 0; i < 20; i++) expect((await post()).statusCode).toBe(201);
  });
});

describe("MAX_TOPICS_PER_STREAM", () => {
  it("answers 400 for more distinct topics than allowed; duplicates and * count once", async () => {
    await start({ maxTopicsPerStream: 3 });
    expect(await refused("/events?topic=a&topic=b&topic=c&topic=d")).toMatchObject({
      status: 400,
      code: "HERALD_TOO_MANY_TOPICS",
      message: expect.stringContaining("at most 3 topics (MAX_TOPICS_PER_STREAM), this one asked for 4"),
    });
    expect((await server.stats()).connections).toBe(0);
    const ok = await listen("/events?topic=a&topic=b&topic=c&topic=a&topic=b");
    const all = await listen("/events?topic=*");
    ok.close();
    all.close();
  });
});

describe("MAX_EVENT_BYTES", () => {
  it("refuses with 413 an event whose lines would grow it past the bound on the wire, and subscribers keep streaming", async () => {
    await start({});
    const live = await listen("/events?topic=n");
    // 60,000 newlines fit in MAX_BODY_BYTES as a form, and would take 420 KB on the wire as data: lines.
    const res = await request(`${server.url}/events`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: `topic=n&data=${"\n".repeat(60_000)}`,
    });
    expect(res.statusCode).toBe(413);
    expect(await res.body.json()).toMatchObject({
      code: "HERALD_EVENT_TOO_LARGE",
      message: expect.stringMatching(/takes 420\d{3} bytes on the wire, more than MAX_EVENT_BYTES \(262144\)/),
    });
    expect((await server.stats()).published).toBe(0);
    await server.publish({ topic: "n", data: "still here" });
    expect((await live.take(1)).map((e) => e.data)).toEqual(["still here"]);
    live.close();
  });
});
