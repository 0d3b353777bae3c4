import { EventSource } from "eventsource";
import Fastify, { type FastifyInstance } from "fastify";
// The package's entry point, as a user installs it (dist/, built by the global setup), not src/.
import herald, { type HeraldApi, MemoryBroker } from "herald";
import { request } from "undici";
import { afterEach, describe, expect, it } from "vitest";
// @ts-expect-error: the example is plain JavaScript, run as its README says.
import { buildShop } from "../../examples/embed-fastify/server.mjs";
import { openStream } from "../helpers/stream.js";
import { waitFor } from "../helpers/wait.js";

let app: FastifyInstance;
afterEach(() => app?.close());

async function listen(instance: FastifyInstance): Promise<string> {
  await instance.listen({ host: "127.0.0.1", port: 0 });
  const address = instance.server.address();
  if (address === null || typeof address === "string") throw new Error("no TCP address");
  return `http://127.0.0.1:${address.port}`;
}

/** A host app with its own auth hook, parser, error and 404 handlers, and Herald under /live. */
async function hostApp(): Promise<FastifyInstance> {
  const host = Fastify({ logger: false });
  host.addHook("onRequest", async (request, reply) => {
    if (request.headers["x-app-key"] !== "k" && !request.url.startsWith("/open")) {
      reply.code(401).send({ host: "no key" });
    }
  });
  host.addContentTypeParser("text/plain", { parseAs: "string" }, (_request, body, done) => done(null, body));
  host.setErrorHandler((err: Error, _request, reply) => {
    reply.code(418).send({ host: "error", message: err.message });
  });
  host.setNotFoundHandler((_request, reply) => {
    reply.code(404).send({ host: "not found" });
  });
  await host.register(herald, { prefix: "/live", historySize: 100, heartbeatMs: 60_000 });
  host.post("/echo", async (request) => ({ echo: request.body }));
  host.post("/notes", async (request) => host.herald.publish({ topic: "notes", data: String(request.body) }));
  host.get("/boom", async () => {
    throw new Error("host failure");
  });
  return host;
}

describe("Herald registered as a plugin in someone's Fastify app", () => {
  it("streams what the app publishes in process to a real EventSource under its prefix", async () => {
    app = await hostApp();
    const url = await listen(app);
    const source = new EventSource(`${url}/live/events?topic=notes`, {
      fetch: (input, init) => fetch(input, { ...init, headers: { ...init?.headers, "x-app-key": "k" } }),
    });
    const received: string[] = [];
    source.onmessage = (e) => received.push(e.data);
    await new Promise((resolve, reject) => {
      source.onopen = resolve;
      source.onerror = reject;
    });
    const res = await request(`${url}/notes`, {
      method: "POST",
      headers: { "content-type": "text/plain", "x-app-key": "k" },
      body: "hello from the app",
    });
    expect(res.statusCode).toBe(200);
    expect(await res.body.json()).toMatchObject({ id: expect.any(String), topic: "notes" });
    await waitFor("the note on the stream", () => received.length === 1);
    expect(received).toEqual(["hello from the app"]);
    source.close();
  });

  it("runs the host's hooks on Herald's routes, and keeps the host's parsers, error and 404 handlers its own", async () => {
    app = await hostApp();
    // The host's auth hook, registered above Herald, guards Herald's routes too.
    const refused = await app.inject({ method: "GET", url: "/live/stats" });
    expect(refused.statusCode).toBe(401);
    expect(refused.json()).toEqual({ host: "no key" });
    const key = { "x-app-key": "k" };
    expect((await app.inject({ method: "GET", url: "/live/stats", headers: key })).statusCode).toBe(200);
    // The host's text/plain parser works for its routes; Herald's publish still refuses text/plain with its own 415.
    const echo = await app.inject({
      method: "POST",
      url: "/echo",
      headers: { ...key, "content-type": "text/plain" },
      payload: "hi",
    });
    expect(echo.json()).toEqual({ echo: "hi" });
    const plain = await app.inject({
      method: "POST",
      url: "/live/events",
      headers: { ...key, "content-type": "text/plain" },
      payload: "hi",
    });
    expect(plain.statusCode).toBe(415);
    expect(plain.json()).toMatchObject({ code: "HERALD_UNSUPPORTED_MEDIA_TYPE" });
    // Errors and unknown paths: the host's handlers outside the prefix, Herald's inside.
    expect((await app.inject({ method: "GET", url: "/boom", headers: key })).json()).toEqual({
      host: "error",
      message: "host failure",
    });
    expect((await app.inject({ method: "GET", url: "/nowhere", headers: key })).json()).toEqual({ host: "not found" });
    expect((await app.inject({ method: "GET", url: "/live/nowhere", headers: key })).json()).toMatchObject({
      statusCode: 404,
      code: "HERALD_NOT_FOUND",
    });
    const bad = await app.inject({
      method: "POST",
      url: "/live/events",
      headers: { ...key, "content-type": "application/json" },
      payload: JSON.stringify({ data: "x", retry: "soon" }),
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ code: "HERALD_INVALID_EVENT" });
  });

  it("replays from Last-Event-ID what the app published before the client came back", async () => {
    app = await hostApp();
    const url = await listen(app);
    const first = await app.herald.publish({ topic: "r", data: "1" });
    const missed = await app.herald.publish([
      { topic: "r", data: "2" },
      { topic: "r", data: "3", event: "named" },
    ]);
    expect(missed.map((a) => a.topic)).toEqual(["r", "r"]);
    // An answer has only the fields that apply: a caller may test `"duplicate" in answer`.
    expect(Object.keys(first)).toEqual(["id", "topic", "time"]);
    expect(Object.keys(missed[1] ?? {})).toEqual(["id", "topic", "event", "time"]);
    const again = await app.herald.publish({ topic: "r", data: "4", id: "once" });
    expect("duplicate" in again).toBe(false);
    expect(await app.herald.publish({ topic: "r", data: "4", id: "once" })).toStrictEqual({
      ...again,
      duplicate: true,
    });
    const stream = await openStream(`${url}/live/events?topic=r`, { "x-app-key": "k", "last-event-id": first.id });
    const events = await stream.take(2);
    expect(events.map((e) => [e.lastEventId, e.data, e.type])).toEqual([
      [missed[0]?.id, "2", "message"],
      [missed[1]?.id, "3", "named"],
    ]);
    stream.close();
  });

  it("validates an in-process batch as a whole: an invalid item names its index and nothing is published", async () => {
    app = await hostApp();
    await expect(app.herald.publish([{ data: "ok" }, { data: "x", retry: -1 }])).rejects.toThrow(
      /item 1: retry must be a whole number/,
    );
    expect(app.herald.stats().published).toBe(0);
    await expect(app.herald.publish({ data: "x", private: true })).rejects.toMatchObject({
      code: "HERALD_PRIVATE_UNAVAILABLE",
    });
  });

  it("ends open streams at once when the app closes", async () => {
    app = await hostApp();
    const url = await listen(app);
    const stream = await openStream(`${url}/live/events`, { "x-app-key": "k" });
    await stream.until("the stream to open", (s) => s.retry !== undefined);
    await app.close();
    await stream.until("the stream to end", (s) => s.ended, 2_000);
    expect(stream.ended).toBe(true);
  });

  it("keeps two instances apart: two prefixes, two decorators, nothing shared", async () => {
    app = Fastify({ logger: false });
    const broker = new MemoryBroker({ historySize: 10 });
    await app.register(herald, { prefix: "/a", decorator: "heraldA", broker });
    await app.register(herald, { prefix: "/b", decorator: "heraldB" });
    const a = (app as unknown as { heraldA: HeraldApi }).heraldA;
    const b = (app as unknown as { heraldB: HeraldApi }).heraldB;
    const url = await listen(app);
    const onB = await openStream(`${url}/b/events?topic=t`);
    await onB.until("the stream to open", (s) => s.retry !== undefined);
    const sent = await a.publish({ topic: "t", data: "for a only" });
    // The broker given as an option is the one a uses.
    expect((await broker.locate(sent.id)).found).toBe(true);
    await b.publish({ topic: "t", data: "for b" });
    expect((await onB.take(1)).map((e) => e.data)).toEqual(["for b"]);
    expect([a.stats().published, b.stats().published]).toEqual([1, 1]);
    expect((await request(`${url}/a/stats`)).statusCode).toBe(200);
    onB.close();
  });

  it("validates options with the service's rules, naming the option and its variable", async () => {
    app = Fastify({ logger: false });
    await expect(app.register(herald, { historySize: 0 })).rejects.toThrow(
      /option historySize \(HISTORY_SIZE="0" is invalid: use a whole number from 1 to/,
    );
    const other = Fastify({ logger: false });
    await expect(other.register(herald, { port: 80 } as never)).rejects.toThrow(/unknown option "port"/);
    await other.close();
  });

  it("takes Redis Sentinels as the Config type spells them, { host, port } each", async () => {
    app = Fastify({ logger: false });
    // Nothing listens there: Herald starts unhealthy and names what it cannot reach.
    await app.register(herald, {
      broker: "redis",
      redisSentinels: [
        { host: "127.0.0.1", port: 1 },
        { host: "127.0.0.1", port: 2 },
      ],
      redisMasterName: "main",
    });
    const health = await app.inject({ method: "GET", url: "/health" });
    expect(health.statusCode).toBe(503);
    expect(health.json().detail).toContain('the primary "main" of the Sentinels 127.0.0.1:1,127.0.0.1:2');
  });
});

describe("examples/embed-fastify", () => {
  it("streams an order created by the shop's own route", async () => {
    app = await buildShop({ logger: false });
    const url = await listen(app);
    const stream = await openStream(`${url}/live/events?topic=orders`);
    await stream.until("the stream to open", (s) => s.retry !== undefined);
    const res = await request(`${url}/orders`, {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: "two croissants",
    });
    expect(res.statusCode).toBe(201);
    const [event] = await stream.take(1);
    expect(event).toMatchObject({ type: "order", data: JSON.stringify({ number: 1, note: "two croissants" }) });
    stream.close();
  });
});
