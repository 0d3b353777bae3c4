import { request } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import type { Envelope } from "../../src/sse/envelope.js";
import { startServer, type TestServer } from "../helpers/server.js";
import { openStream } from "../helpers/stream.js";
import { hs256, SECRET } from "../helpers/tokens.js";

let server: TestServer;
afterEach(() => server.close());

const envelope = (data: string | undefined) => JSON.parse(data ?? "null") as Envelope;

describe("GET /events?envelope=1", () => {
  it("sends every event unnamed, with its id and retry, and topic, name, data and time in the data", async () => {
    server = await startServer();
    const stream = await openStream(`${server.url}/events?topic=*&envelope=1`);
    await stream.until("the stream to open", (s) => s.retry !== undefined);
    const before = Date.now();
    const named = await server.publish({ topic: "orders/42", event: "shipped", data: { carrier: "ups" }, retry: 5000 });
    const plain = await server.publish({ topic: "news", data: "two\nlines" });
    const [first, second] = await stream.take(2);

    expect(first).toMatchObject({ type: "message", lastEventId: named.id });
    const shipped = envelope(first?.data);
    expect(shipped).toEqual({
      topic: "orders/42",
      event: "shipped",
      data: '{"carrier":"ups"}',
      time: expect.any(String),
      retry: 5000,
    });
    expect(Date.parse(shipped.time)).toBeGreaterThanOrEqual(before - 1);
    expect(stream.retry).toBe(5000);
    expect(second).toMatchObject({ type: "message", lastEventId: plain.id });
    expect(envelope(second?.data)).toEqual({ topic: "news", data: "two\nlines", time: expect.any(String) });
    stream.close();
  });

  it("marks replayed events, and sends a reset as it is", async () => {
    server = await startServer();
    const ids: string[] = [];
    for (const data of ["a", "b", "c"]) ids.push((await server.publish({ topic: "t", event: "e", data })).id);
    const resumed = await openStream(`${server.url}/events?topic=t&envelope=1`, { "last-event-id": ids[0] as string });
    await resumed.take(2);
    await server.publish({ topic: "t", data: "live" });
    const events = await resumed.take(3);
    expect(events.map((e) => [e.lastEventId, envelope(e.data).data, envelope(e.data).replayed])).toEqual([
      [ids[1], "b", true],
      [ids[2], "c", true],
      [expect.any(String), "live", undefined],
    ]);

    const reset = await openStream(`${server.url}/events?topic=t&envelope=1&lastEventId=gone`);
    const [first] = await reset.take(1);
    expect(first?.type).toBe("reset");
    expect(JSON.parse(first?.data ?? "{}")).toMatchObject({ reason: "last-event-id-not-in-history" });
    resumed.close();
    reset.close();
  });

  it("leaves plain subscribers of the same event with the plain format", async () => {
    server = await startServer();
    const enveloped = await openStream(`${server.url}/events?topic=t&envelope=1`);
    const plain = await openStream(`${server.url}/events?topic=t`);
    for (const s of [enveloped, plain]) await s.until("the stream to open", (x) => x.retry !== undefined);
    const { id } = await server.publish({ topic: "t", event: "update", data: "hello" });
    await enveloped.take(1);
    await plain.take(1);
    expect(plain.raw).toBe(`retry: 3000\n\nid: ${id}\nevent: update\ndata: hello\n\n`);
    expect(envelope(enveloped.events[0]?.data)).toMatchObject({ event: "update", data: "hello" });
    enveloped.close();
    plain.close();
  });

  it("marks private events, which reach only a stream whose token covers them", async () => {
    server = await startServer({ subscriberJwtKey: SECRET });
    const token = await hs256({ subscribe: ["vip"] });
    const holder = await openStream(`${server.url}/events?topic=vip&envelope=1&authorization=${token}`);
    const anonymous = await openStream(`${server.url}/events?topic=vip&envelope=1`);
    for (const s of [holder, anonymous]) await s.until("the stream to open", (x) => x.retry !== undefined);
    await server.publish({ topic: "vip", data: "secret", private: true });
    await server.publish({ topic: "vip", data: "public" });
    const events = await holder.take(2);
    expect(events.map((e) => envelope(e.data))).toEqual([
      { topic: "vip", data: "secret", time: expect.any(String), private: true },
      { topic: "vip", data: "public", time: expect.any(String) },
    ]);
    expect((await anonymous.take(1)).map((e) => envelope(e.data).data)).toEqual(["public"]);
    holder.close();
    anonymous.close();
  });

  it("answers 400 to any other value of envelope", async () => {
    server = await startServer();
    const res = await request(`${server.url}/events?envelope=yes`);
    expect(res.statusCode).toBe(400);
    expect(await res.body.json()).toMatchObject({
      code: "HERALD_INVALID_QUERY",
      message: expect.stringMatching(/envelope/),
    });
  });
});
