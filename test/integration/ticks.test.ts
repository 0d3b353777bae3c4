import { request } from "undici";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { startServer, type TestServer } from "../helpers/server.js";
import { openStream } from "../helpers/stream.js";
import { waitFor } from "../helpers/wait.js";

let server: TestServer;
beforeEach(async () => {
  server = await startServer({ tickMs: 1_000 });
});
afterEach(async () => {
  vi.useRealTimers();
  await server.close();
});

describe("GET /ticks", () => {
  it("sends tick events with increasing ids and {time, seq} data, one per interval", async () => {
    // Only setInterval is faked: the network stays real, the clock's cadence is driven by the test.
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    const stream = await openStream(`${server.url}/ticks?interval=250`);
    const [first] = await stream.take(1);
    expect(vi.getTimerCount()).toBe(2); // this stream's tick timer, and the shared heartbeat timer
    vi.advanceTimersByTime(250);
    await stream.take(2);
    expect(stream.events).toHaveLength(2);
    vi.advanceTimersByTime(500);
    const events = await stream.take(4);
    expect(events.map((e) => [e.type, e.lastEventId])).toEqual([
      ["tick", "1"],
      ["tick", "2"],
      ["tick", "3"],
      ["tick", "4"],
    ]);
    const data = JSON.parse(first?.data ?? "");
    expect(data.seq).toBe(1);
    expect(new Date(data.time).toISOString()).toBe(data.time);
    stream.close();
  });

  it("continues the sequence after the Last-Event-ID of a reconnect", async () => {
    const stream = await openStream(`${server.url}/ticks`, { "last-event-id": "41" });
    const [tick] = await stream.take(1);
    expect(tick?.lastEventId).toBe("42");
    expect(JSON.parse(tick?.data ?? "").seq).toBe(42);
    stream.close();
  });

  it.each([
    ["interval=99", /interval must be a whole number of milliseconds from 100 to 60000/],
    ["interval=60001", /from 100 to 60000/],
    ["interval=soon", /from 100 to 60000/],
    ["interval=100&interval=200", /from 100 to 60000/],
    ["lastEventId=abc", /Last-Event-ID on \/ticks must be a tick number/],
  ])("refuses ?%s with a 400 before the stream opens", async (query, message) => {
    const res = await request(`${server.url}/ticks?${query}`);
    expect(res.statusCode).toBe(400);
    const body = (await res.body.json()) as { code: string; message: string };
    expect(body.code).toBe("HERALD_INVALID_QUERY");
    expect(body.message).toMatch(message);
  });

  it("frees each stream's timer the moment its client goes, over many connect/disconnect cycles", async () => {
    // Fake setInterval lets the test count the real timers; the first tick of a stream is sent at once.
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    for (let round = 0; round < 10; round++) {
      const streams = await Promise.all(
        Array.from({ length: 10 }, () => openStream(`${server.url}/ticks?interval=100`)),
      );
      await Promise.all(streams.map((s) => s.take(1)));
      expect(await server.stats()).toMatchObject({ connections: 10, timers: 10 });
      expect(vi.getTimerCount()).toBe(11); // ten tick timers and the shared heartbeat timer
      for (const s of streams) s.close();
      await waitFor("every timer to be cleared", () => vi.getTimerCount() === 0);
      expect(await server.stats()).toMatchObject({ connections: 0, timers: 0 });
    }
  });
});
