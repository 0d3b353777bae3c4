import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../../src/app.js";
import { DEFAULT_CONFIG } from "../../src/config.js";
import { injectPublish } from "../helpers/inject.js";
import { startServer, type TestServer } from "../helpers/server.js";
import { openStream } from "../helpers/stream.js";

let app: FastifyInstance;
beforeAll(async () => {
  app = await buildApp({ ...DEFAULT_CONFIG, logLevel: "silent" });
});
afterAll(() => app.close());

const get = async (url: string) => {
  const res = await app.inject({ url });
  return { status: res.statusCode, body: res.json() as { code: string; message: string } };
};

describe("unknown query parameters on stream routes", () => {
  it.each([
    [
      "/events?topics=a",
      'Unknown query parameter "topics" (did you mean topic?): GET /events takes topic, lastEventId, authorization, envelope',
    ],
    [
      "/events?topic=a&lastEventID=5&foo=1",
      'Unknown query parameters "lastEventID" (did you mean lastEventId?), "foo": GET /events takes topic, lastEventId, authorization, envelope',
    ],
    [
      "/ticks?intervall=500",
      'Unknown query parameter "intervall" (did you mean interval?): GET /ticks takes interval, lastEventId, authorization',
    ],
    ["/stats/stream?topic=a", 'Unknown query parameter "topic": GET /stats/stream takes authorization'],
  ])("GET %s is a 400 that names the parameter and lists the known ones", async (url, message) => {
    expect(await get(url)).toEqual({
      status: 400,
      body: { statusCode: 400, code: "HERALD_INVALID_QUERY", error: "Bad Request", message },
    });
  });

  it("quotes at most five unknown names, each cut short", async () => {
    const names = Array.from({ length: 8 }, (_, i) => `${"x".repeat(100)}${i}`);
    const { status, body } = await get(`/events?${names.map((n) => `${n}=1`).join("&")}`);
    expect(status).toBe(400);
    expect(body.message).toContain(`"${"x".repeat(64)}", `);
    expect(body.message).toContain(" and 3 more: GET /events takes");
    expect(body.message.length).toBeLessThan(600);
  });
});

describe("publish mistakes", () => {
  it("a bad topic is named in the error, as on streams", async () => {
    for (const [body, type] of [
      ['{"topic":"orders\\n42","data":1}', "application/json"],
      ["topic=orders%0A42&data=1", "application/x-www-form-urlencoded"],
    ] as const) {
      const res = await injectPublish(app, body, { type });
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({
        code: "HERALD_INVALID_TOPIC",
        message: expect.stringMatching(/^Invalid topic "orders\\n42": /),
      });
    }
  });

  it("a form with data twice is refused, saying to send one data field with newlines in it", async () => {
    const res = await injectPublish(app, "topic=t&data=x&data=y", { type: "application/x-www-form-urlencoded" });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({
      code: "HERALD_INVALID_EVENT",
      message: expect.stringMatching(
        /^The form has 2 data fields: send one data field; data of several lines is one field with newlines in it/,
      ),
    });
    const event = await injectPublish(app, "data=x&event=a&event=b", { type: "application/x-www-form-urlencoded" });
    expect(event.json().message).toBe("The form has 2 event fields: send one event field");
  });
});

describe("a subscriber who got it right", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(() => server.close());

  it("streams with every parameter GET /events takes, and a multi-line form field arrives as lines", async () => {
    const stream = await openStream(`${server.url}/events?topic=t&topic=u&lastEventId=&authorization=&envelope=1`);
    expect(stream.status).toBe(200);
    const res = await fetch(`${server.url}/events`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "topic=u&data=line%201%0Aline%202",
    });
    expect(res.status).toBe(201);
    const [event] = await stream.take(1);
    expect(JSON.parse(event?.data ?? "{}")).toMatchObject({ topic: "u", data: "line 1\nline 2" });
    stream.close();
  });
});
