import { connect } from "node:net";
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { buildApp } from "../../src/app.js";
import { DEFAULT_CONFIG } from "../../src/config.js";
import { injectPublish } from "../helpers/inject.js";
import { startServer, type TestServer } from "../helpers/server.js";
import { type OpenStream, openStream } from "../helpers/stream.js";
import { hs256, SECRET } from "../helpers/tokens.js";
import { waitFor } from "../helpers/wait.js";

/**
 * Hostile input, generated: every request must get a 2xx or a 4xx, never a 5xx or a crash, and
 * subscribers streaming meanwhile must get exactly what was accepted, nothing else. Runs are
 * bounded so the suite takes seconds; a failure prints fast-check's seed and the shrunk input.
 */

/** One character a hostile client might send: any code point, controls, syntax, escapes gone wrong. */
const hostileUnit = fc.oneof(
  { weight: 5, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      ...["\0", "\r", "\n", "\r\n", "\t", "\u007f", "\u2028", "\uFEFF", "\uD800", " ", "+", "#"],
      ...["%", "%00", "%zz", "%ff", "%0A", "&", "=", "*", "{", "}", "[", "]", '"', "\\", "/", ".."],
      ...["__proto__", "constructor", "Bearer ", "null", "true", "-1", "1e309", "data: x", "id: 1"],
    ),
  },
  { weight: 1, arbitrary: fc.constantFrom("x".repeat(300), "é".repeat(200), "/".repeat(300)) },
);
const hostileText = fc.string({ unit: hostileUnit, maxLength: 12 });
const validTopic = fc.stringMatching(/^[a-z0-9_.:/@~-]{1,12}$/).filter((t) => t !== "watch");
const field = fc.constantFrom("topic", "event", "data", "id", "retry", "private", "topic[]", "__proto__", "extra");
const anyValue = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  hostileText,
  validTopic,
  fc.boolean(),
  fc.integer(),
  fc.double(),
  fc.constant("x".repeat(70_000)),
);

interface Publish {
  body: string | Buffer;
  contentType: string | undefined;
}

/** JSON text built by hand, so keys repeat and values have any type. */
const jsonPairs: fc.Arbitrary<Publish> = fc
  .array(fc.tuple(field, anyValue), { maxLength: 7 })
  .map((pairs) => `{${pairs.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(",")}}`)
  .map((body) => ({ body, contentType: "application/json" }));
/** Close to valid, so that many are accepted and the subscribers have something to check. */
const mostly = <T, U>(valid: fc.Arbitrary<T>, hostile: fc.Arbitrary<U>) =>
  fc.oneof({ weight: 4, arbitrary: valid }, { weight: 1, arbitrary: hostile });
const nearlyValid: fc.Arbitrary<Publish> = fc
  .record(
    {
      topic: mostly(validTopic, hostileText),
      data: anyValue,
      event: mostly(validTopic, hostileText),
      id: mostly(fc.uuid(), fc.oneof(fc.constantFrom("dup-1", "dup-2"), hostileText)),
      retry: mostly(fc.nat({ max: 60_000 }), fc.integer()),
      private: mostly(fc.boolean(), anyValue),
    },
    { requiredKeys: ["data"] },
  )
  .map((body) => ({ body: JSON.stringify(body), contentType: "application/json" }));
const form: fc.Arbitrary<Publish> = fc
  .tuple(
    fc.array(fc.tuple(field, fc.oneof(hostileText, validTopic, fc.constantFrom("true", "false", "5"))), {
      maxLength: 8,
    }),
    fc.boolean(),
  )
  .map(([pairs, encode]) => ({
    body: pairs
      .map(([k, v]) => `${k}=${encode ? encodeURIComponent(v.replace(/[\uD800-\uDFFF]/g, "?")) : v}`)
      .join("&"),
    contentType: "application/x-www-form-urlencoded",
  }));
const rawBytes: fc.Arbitrary<Publish> = fc.record({
  body: fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes)),
  contentType: fc.constantFrom(
    undefined,
    "application/json",
    "application/x-www-form-urlencoded",
    "text/plain",
    "APPLICATION/JSON; charset=utf-16",
    "multipart/form-data; boundary=x",
    ";;;",
    "application/json, text/plain",
  ),
});
const deep: fc.Arbitrary<Publish> = fc.integer({ min: 1, max: 8_000 }).map((n) => ({
  body: `{"data":${"[".repeat(n)}${"]".repeat(n)}}`,
  contentType: "application/json",
}));
const hostilePublish = fc.oneof(jsonPairs, { weight: 3, arbitrary: nearlyValid }, form, rawBytes, deep);

interface RawRequest {
  path: string;
  query: [string, string, boolean][];
  headers: [string, string][];
}

/** Header values as raw bytes: anything but CR and LF, which would end the header early. */
const headerValue = fc.oneof(
  fc.string({ unit: hostileUnit, maxLength: 10 }).map((v) => v.replace(/[\r\n]/g, "")),
  fc.constantFrom("x".repeat(20_000), "Bearer ", "Bearer a.b.c", "herald_token=a; herald_token=b", "1, 2"),
);
const rawRequest: fc.Arbitrary<RawRequest> = fc.record({
  path: fc.constantFrom("/events", "/ticks", "/events/", "/EVENTS", "//events", "/ticks/../events", "/stats"),
  query: fc.array(
    fc.tuple(
      fc.oneof(fc.constantFrom("topic", "lastEventId", "authorization", "interval", "topic[]", "TOPIC"), hostileText),
      fc.oneof(validTopic, hostileText, fc.constantFrom("*", "", "100", "60001", "x".repeat(20_000))),
      fc.boolean(),
    ),
    { maxLength: 6 },
  ),
  headers: fc.array(
    fc.tuple(fc.constantFrom("Last-Event-ID", "Authorization", "Cookie", "Accept", "X-Forwarded-For"), headerValue),
    { maxLength: 4 },
  ),
});

/** Sends `req` as raw bytes on its own socket; resolves to the response's status code, then hangs up. */
function sendRaw(url: string, req: RawRequest): Promise<number> {
  const { hostname, port } = new URL(url);
  const query = req.query
    .map(([k, v, encode]) => (encode ? `${encodeURIComponent(fix(k))}=${encodeURIComponent(fix(v))}` : `${k}=${v}`))
    .join("&");
  const head = [`GET ${req.path}${query ? `?${query}` : ""} HTTP/1.1`, "Host: 127.0.0.1"];
  for (const [name, value] of req.headers) head.push(`${name}: ${value}`);
  const bytes = Buffer.from(`${head.join("\r\n")}\r\n\r\n`, "utf8");
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let received = "";
    const timer = setTimeout(() => fail(new Error("no status line within 5 s")), 5_000);
    const fail = (err: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(new Error(`${err.message}; received ${JSON.stringify(received.slice(0, 200))}`));
    };
    socket.on("error", fail);
    socket.on("close", () => fail(new Error("closed before a status line")));
    socket.on("data", (chunk) => {
      received += chunk.toString("latin1");
      const match = /^HTTP\/1\.1 (\d{3}) /.exec(received);
      if (match === null) return;
      clearTimeout(timer);
      socket.removeAllListeners("close");
      socket.destroy();
      resolve(Number(match[1]));
    });
    socket.write(bytes);
  });
}

/** encodeURIComponent throws on a lone surrogate; a browser would have replaced it. */
function fix(text: string): string {
  return text.replace(/[\uD800-\uDFFF]/g, "\uFFFD");
}

describe("hostile input against a live server", () => {
  let server: TestServer;
  let watch: OpenStream;
  let everyPublic: OpenStream;
  let everyPrivate: OpenStream;
  let statsAuth: Record<string, string>;
  // Each test gets its own server and watchers: none depends on what another left behind.
  beforeEach(async () => {
    server = await startServer({ subscriberJwtKey: SECRET, maxBodyBytes: 65_536, publishRateLimit: 0 });
    const everything = await hs256({ subscribe: ["*"] });
    statsAuth = { authorization: `Bearer ${everything}` };
    watch = await openStream(`${server.url}/events?topic=watch`);
    everyPublic = await openStream(`${server.url}/events?topic=*`);
    everyPrivate = await openStream(`${server.url}/events?topic=*`, statsAuth);
    for (const s of [watch, everyPublic, everyPrivate]) await s.until("open", (x) => x.retry !== undefined);
  });
  afterEach(() => server.close());

  /** Publishes a marker and checks that every watcher still streams and got exactly `accepted` and it. */
  async function expectWatchersGot(accepted: { id: string; private: boolean }[]) {
    const marker = await server.publish({ topic: "watch", data: "marker" });
    for (const s of [watch, everyPublic, everyPrivate]) {
      await s.until("the marker", (x) => x.events.some((e) => e.lastEventId === marker.id), 10_000);
      expect(s.ended).toBe(false);
    }
    expect(watch.events.map((e) => e.data)).toEqual(["marker"]);
    const ids = (s: OpenStream) => s.events.map((e) => e.lastEventId);
    expect(ids(everyPublic)).toEqual([...accepted.filter((e) => !e.private).map((e) => e.id), marker.id]);
    expect(ids(everyPrivate)).toEqual([...accepted.map((e) => e.id), marker.id]);
    expect((await server.app.inject({ url: "/health" })).statusCode).toBe(200);
  }

  it("answers every hostile publish with a 2xx or a 4xx, and subscribers get exactly the accepted events", async () => {
    /** Events the server accepted (201, not a duplicate), in order. */
    const accepted: { id: string; private: boolean }[] = [];
    await fc.assert(
      fc.asyncProperty(hostilePublish, async ({ body, contentType }) => {
        const res = await injectPublish(server.app, body, { type: contentType });
        expect(res.statusCode, res.body).toBeGreaterThanOrEqual(200);
        expect(res.statusCode, res.body).toBeLessThan(500);
        if (res.statusCode >= 400) expect(res.json()).toMatchObject({ statusCode: res.statusCode });
        const json = res.json() as { id: string; duplicate?: boolean; private?: boolean };
        if (res.statusCode === 201 && !json.duplicate) accepted.push({ id: json.id, private: json.private === true });
      }),
      { numRuns: 400 },
    );
    // The generators must reach the accepting path too, or the subscriber checks below prove little.
    expect(accepted.filter((e) => !e.private).length).toBeGreaterThan(10);
    expect(accepted.filter((e) => e.private).length).toBeGreaterThan(10);
    await expectWatchersGot(accepted);
  });

  it("answers every hostile stream request (query strings and headers as raw bytes) with a 2xx or a 4xx", async () => {
    await fc.assert(
      fc.asyncProperty(rawRequest, async (req) => {
        const status = await sendRaw(server.url, req);
        expect(status, JSON.stringify(req).slice(0, 500)).toBeGreaterThanOrEqual(200);
        expect(status, JSON.stringify(req).slice(0, 500)).toBeLessThan(500);
      }),
      { numRuns: 250 },
    );
    // Every stream the fuzz opened is freed once its client hung up: only the three watchers remain.
    await waitFor("the fuzz streams to be freed", async () => (await server.stats(statsAuth)).connections === 3);
    await expectWatchersGot([]);
  });
});

describe("what the fuzz found", () => {
  it("refuses a lone UTF-16 surrogate in id, event or data, which clients would get as U+FFFD", async () => {
    const app = await buildApp({ ...DEFAULT_CONFIG, logLevel: "silent" });
    try {
      for (const body of ['{"data":1,"id":"a\\ud800"}', '{"data":1,"event":"\\udc00"}', '{"data":"x\\ud83d"}']) {
        const res = await injectPublish(app, body);
        expect(res.statusCode, body).toBe(400);
        expect(res.json().message, body).toMatch(/lone UTF-16 surrogate/);
      }
      const pair = await injectPublish(
        app,
        '{"data":"\\ud83d\\ude00","id":"smile-\\ud83d\\ude00","event":"\\ud83d\\ude00"}',
      );
      expect(pair.statusCode).toBe(201);
      expect(pair.json().id).toBe("smile-\u{1F600}");
    } finally {
      await app.close();
    }
  });
});

describe("hostile tokens against a locked publisher", () => {
  it("answers any Authorization header with 201, 401 or 403, never a 5xx", async () => {
    const app = await buildApp({ ...DEFAULT_CONFIG, logLevel: "silent", publisherJwtKey: SECRET });
    const valid = await hs256({ publish: ["news"] });
    const b64 = (text: string) => Buffer.from(text).toString("base64url");
    const [, payload, signature] = valid.split(".");
    const printable = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)) });
    const header = fc.oneof(
      printable,
      printable.map((t) => `Bearer ${t}`),
      // The valid token with one character changed, added or removed.
      fc
        .tuple(
          fc.nat({ max: valid.length - 1 }),
          printable.map((t) => t.slice(0, 1)),
        )
        .map(([at, ch]) => `Bearer ${valid.slice(0, at)}${ch}${valid.slice(at + 1)}`),
      // Crafted headers on the valid payload and signature.
      fc
        .constantFrom(
          '{"alg":"none"}',
          '{"alg":"NONE"}',
          '{"alg":"HS256","crit":["b64"],"b64":false}',
          '{"alg":"HS256","crit":["exp"]}',
          '{"alg":"RS256"}',
          '{"alg":"HS512"}',
          '{"alg":["HS256"]}',
          '{"alg":null}',
          "{}",
          "[]",
          "not json",
          '{"alg":"HS256","kid":"../../etc/passwd","jku":"http://evil"}',
        )
        .map((h) => `Bearer ${b64(h)}.${payload}.${signature}`),
      fc.jsonValue().map((claims) => `Bearer ${b64('{"alg":"HS256"}')}.${b64(JSON.stringify(claims))}.${signature}`),
    );
    try {
      await fc.assert(
        fc.asyncProperty(header, async (authorization) => {
          const res = await injectPublish(app, { topic: "news", data: 1 }, { headers: { authorization } });
          expect([201, 401, 403], `${authorization} → ${res.body}`).toContain(res.statusCode);
        }),
        { numRuns: 300 },
      );
    } finally {
      await app.close();
    }
  });
});
