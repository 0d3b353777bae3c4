import type { AddressInfo } from "node:net";
import type { FastifyInstance } from "fastify";
import { request } from "undici";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { buildApp } from "../../src/app.js";
import { DEFAULT_CONFIG } from "../../src/config.js";
import { startServer, type TestServer } from "../helpers/server.js";
import { openStream } from "../helpers/stream.js";

describe("POST /events", () => {
  let app: FastifyInstance;
  beforeEach(async () => {
    app = await buildApp({ ...DEFAULT_CONFIG, logLevel: "silent", maxBodyBytes: 1_024 });
  });
  afterEach(() => app.close());

  const postJson = (body: unknown) =>
    app.inject({
      method: "POST",
      url: "/events",
      headers: { "content-type": "application/json" },
      payload: JSON.stringify(body),
    });

  it("answers 201 with the assigned id, for JSON", async () => {
    const res = await postJson({ topic: "news", event: "update", data: { a: 1 } });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({ id: expect.any(String), topic: "news", event: "update" });
    expect(new Date(res.json().time).getTime()).not.toBeNaN();
  });

  it("accepts a form body, as curl -d sends it, with topic defaulting to default", async () => {
    const res = await app.inject({
      method: "POST",
      url: "/events",
      payload: "data=hello&retry=250",
      headers: { "content-type": "application/x-www-form-urlencoded" },
    });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({ topic: "default" });
  });

  it("assigns a different id to every event", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await postJson({ data: i })).json().id);
    expect(new Set(ids).size).toBe(3);
  });

  it("keeps a publisher's id; an identical retry returns the original, a different one is a 409", async () => {
    const first = await postJson({ topic: "orders", id: "order-42", data: { total: 5 } });
    expect(first.statusCode).toBe(201);
    expect(first.json().id).toBe("order-42");
    const retry = await postJson({ topic: "orders", id: "order-42", data: { total: 5 } });
    expect(retry.statusCode).toBe(201);
    expect(retry.json()).toMatchObject({ id: "order-42", time: first.json().time, duplicate: true });
    const conflict = await postJson({ topic: "orders", id: "order-42", data: { total: 6 } });
    expect(conflict.statusCode).toBe(409);
    expect(conflict.json()).toMatchObject({ code: "HERALD_ID_CONFLICT", message: expect.stringContaining("order-42") });
  });

  it("takes a form sent with an upper-case Content-Type, retry included, and sends that retry", async () => {
    await app.listen({ host: "127.0.0.1", port: 0 });
    const stream = await openStream(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}/events`);
    await stream.until("the stream to open", (s) => s.retry !== undefined);
    const res = await app.inject({
      method: "POST",
      url: "/events",
      payload: "data=x&retry=5",
      headers: { "content-type": "Application/X-WWW-Form-Urlencoded" },
    });
    expect(res.statusCode).toBe(201);
    await stream.until("the event", (s) => s.events.length === 1);
    expect(stream.raw).toContain(`id: ${res.json().id}\nretry: 5\ndata: x\n\n`);
    expect(stream.retry).toBe(5);
    stream.close();
  });

  it("answers 400, not 500, for data nested too deeply to encode", async () => {
    const roomy = await buildApp({ ...DEFAULT_CONFIG, logLevel: "silent", maxBodyBytes: 100_000 });
    const res = await roomy.inject({
      method: "POST",
      url: "/events",
      headers: { "content-type": "application/json" },
      payload: `{"data":${"[".repeat(20_000)}${"]".repeat(20_000)}}`,
    });
    await roomy.close();
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({
      code: "HERALD_INVALID_EVENT",
      message: expect.stringContaining("nested too deeply"),
    });
  });

  it("allows Last-Event-ID in CORS preflight, from any origin by default", async () => {
    const res = await app.inject({
      method: "OPTIONS",
      url: "/events",
      headers: {
        origin: "https://app.example",
        "access-control-request-method": "GET",
        "access-control-request-headers": "last-event-id",
      },
    });
    expect(res.statusCode).toBe(204);
    expect(res.headers["access-control-allow-origin"]).toBe("*");
    expect(String(res.headers["access-control-allow-headers"]).toLowerCase()).toContain("last-event-id");
  });
});

describe("bad input gets a clear 4xx, and a live subscriber keeps streaming", () => {
  let server: TestServer;
  beforeEach(async () => {
    server = await startServer({ maxBodyBytes: 1_024 });
  });
  afterEach(() => server.close());

  const cases: {
    name: string;
    status: number;
    code: string;
    message: RegExp;
    send: () => { body: string; type?: string; method?: string; path?: string };
  }[] = [
    {
      name: "malformed JSON",
      status: 400,
      code: "HERALD_INVALID_JSON",
      message: /not valid JSON \(Unexpected token/,
      send: () => ({ body: '{"data": }', type: "application/json" }),
    },
    {
      name: "a body with no Content-Type",
      status: 415,
      code: "HERALD_UNSUPPORTED_MEDIA_TYPE",
      message: /\(none\) is not supported/,
      send: () => ({ body: "data=1" }),
    },
    {
      name: "an empty JSON body",
      status: 400,
      code: "HERALD_INVALID_JSON",
      message: /empty/,
      send: () => ({ body: "", type: "application/json" }),
    },
    {
      name: "a JSON array",
      status: 400,
      code: "HERALD_INVALID_EVENT",
      message: /JSON object/,
      send: () => ({ body: "[1]", type: "application/json" }),
    },
    {
      name: "data missing",
      status: 400,
      code: "HERALD_INVALID_EVENT",
      message: /data is required/,
      send: () => ({ body: '{"topic":"a"}', type: "application/json" }),
    },
    {
      name: "data missing from a form",
      status: 400,
      code: "HERALD_INVALID_EVENT",
      message: /data is required/,
      send: () => ({ body: "topic=a", type: "application/x-www-form-urlencoded" }),
    },
    {
      name: "LF in event",
      status: 400,
      code: "HERALD_INVALID_EVENT",
      message: /event .*no CR, LF or NUL/,
      send: () => ({ body: JSON.stringify({ data: 1, event: "a\ndata: forged" }), type: "application/json" }),
    },
    {
      name: "CR in id",
      status: 400,
      code: "HERALD_INVALID_EVENT",
      message: /id .*no CR, LF or NUL/,
      send: () => ({ body: JSON.stringify({ data: 1, id: "1\rretry: 1" }), type: "application/json" }),
    },
    {
      name: "NUL in id",
      status: 400,
      code: "HERALD_INVALID_EVENT",
      message: /id .*no CR, LF or NUL/,
      send: () => ({ body: JSON.stringify({ data: 1, id: "a\u0000" }), type: "application/json" }),
    },
    {
      name: "CRLF in a form event",
      status: 400,
      code: "HERALD_INVALID_EVENT",
      message: /event/,
      send: () => ({ body: "data=1&event=a%0D%0Aid%3A%202", type: "application/x-www-form-urlencoded" }),
    },
    {
      name: "a topic with a line feed",
      status: 400,
      code: "HERALD_INVALID_TOPIC",
      message: /no CR, LF or NUL/,
      send: () => ({ body: JSON.stringify({ data: 1, topic: "a\nb" }), type: "application/json" }),
    },
    {
      name: "a topic with a NUL",
      status: 400,
      code: "HERALD_INVALID_TOPIC",
      message: /1 to 1024 characters/,
      send: () => ({ body: JSON.stringify({ data: 1, topic: "a\u0000b" }), type: "application/json" }),
    },
    {
      name: "the topic *",
      status: 400,
      code: "HERALD_INVALID_TOPIC",
      message: /topic/,
      send: () => ({ body: JSON.stringify({ data: 1, topic: "*" }), type: "application/json" }),
    },
    {
      name: "a negative retry",
      status: 400,
      code: "HERALD_INVALID_EVENT",
      message: /retry must be a whole number/,
      send: () => ({ body: JSON.stringify({ data: 1, retry: -1 }), type: "application/json" }),
    },
    {
      name: "a fractional retry",
      status: 400,
      code: "HERALD_INVALID_EVENT",
      message: /retry/,
      send: () => ({ body: JSON.stringify({ data: 1, retry: 1.5 }), type: "application/json" }),
    },
    {
      name: "a retry given as a JSON string",
      status: 400,
      code: "HERALD_INVALID_EVENT",
      message: /retry/,
      send: () => ({ body: JSON.stringify({ data: 1, retry: "5" }), type: "application/json" }),
    },
    {
      name: "a non-numeric form retry",
      status: 400,
      code: "HERALD_INVALID_EVENT",
      message: /retry/,
      send: () => ({ body: "data=1&retry=soon", type: "application/x-www-form-urlencoded" }),
    },
    {
      name: "an unknown field",
      status: 400,
      code: "HERALD_INVALID_EVENT",
      message: /Unknown field "evnt"/,
      send: () => ({ body: JSON.stringify({ data: 1, evnt: "x" }), type: "application/json" }),
    },
    {
      name: "a body over MAX_BODY_BYTES",
      status: 413,
      code: "HERALD_BODY_TOO_LARGE",
      message: /1024 bytes \(MAX_BODY_BYTES\)/,
      send: () => ({ body: JSON.stringify({ data: "x".repeat(2_000) }), type: "application/json" }),
    },
    {
      name: "text/plain",
      status: 415,
      code: "HERALD_UNSUPPORTED_MEDIA_TYPE",
      message: /text\/plain is not supported: send application\/json/,
      send: () => ({ body: "hello", type: "text/plain" }),
    },
    {
      name: "an unknown route",
      status: 404,
      code: "HERALD_NOT_FOUND",
      message: /No route GET \/nope/,
      send: () => ({ body: "", method: "GET", path: "/nope" }),
    },
  ];

  it.each(cases)("$name → $status $code", async ({ status, code, message, send }) => {
    const live = await openStream(`${server.url}/events?topic=watch`);
    const { body, type, method = "POST", path = "/events" } = send();
    const res = await request(`${server.url}${path}`, {
      method: method as "POST",
      headers: type === undefined ? {} : { "content-type": type },
      body: method === "GET" ? undefined : body,
    });
    const json = (await res.body.json()) as Record<string, unknown>;
    expect(res.statusCode).toBe(status);
    expect(json).toMatchObject({ statusCode: status, code, error: expect.any(String) });
    expect(json.message).toMatch(message);

    await server.publish({ topic: "watch", data: "still here" });
    const [event] = await live.take(1);
    expect(event?.data).toBe("still here");
    expect(live.ended).toBe(false);
    expect(live.events).toHaveLength(1);
    live.close();
  });
});
