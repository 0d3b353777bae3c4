import { request } from "undici";
import { afterEach, describe, expect, it, vi } from "vitest";
import { STATS_STREAM_MS, type StatsSample } from "../../src/routes/stats-stream.js";
import { startServer, type TestServer } from "../helpers/server.js";
import { type OpenStream, openStream } from "../helpers/stream.js";
import { hs256, SECRET } from "../helpers/tokens.js";
import { waitFor } from "../helpers/wait.js";

let server: TestServer | undefined;
afterEach(async () => {
  vi.useRealTimers();
  await server?.close();
});

const samples = (s: OpenStream): StatsSample[] =>
  s.events.filter((e) => e.type === "stats").map((e) => JSON.parse(e.data) as StatsSample);

describe("GET /stats/stream", () => {
  it("sends the /stats figures at once, then one sample a second with the rates of that second", async () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    server = await startServer({ retryMs: 1_234 });
    const watcher = await openStream(`${server.url}/stats/stream`);
    expect(watcher.status).toBe(200);
    expect(watcher.headers["content-type"]).toBe("text/event-stream; charset=utf-8");
    const [first] = await watcher.take(1);
    expect(first?.type).toBe("stats");
    expect(samples(watcher)[0]).toMatchObject({
      connections: 1,
      published: 0,
      publishedPerS: 0,
      deliveredPerS: 0,
      retryMs: 1_234,
    });
    expect(Object.keys(samples(watcher)[0] ?? {})).toEqual(expect.arrayContaining(Object.keys(await server.stats())));

    const subscriber = await openStream(`${server.url}/events?topic=news`);
    const other = await openStream(`${server.url}/events?topic=*`);
    for (let i = 0; i < 3; i++) await server.publish({ topic: "news", data: `${i}` });
    await subscriber.take(3);
    await other.take(3);
    vi.advanceTimersByTime(STATS_STREAM_MS);
    await watcher.take(2);
    expect(samples(watcher)[1]).toMatchObject({
      connections: 3,
      topics: { news: 1, "*": 1 },
      published: 3,
      delivered: 6,
      publishedPerS: 3,
      deliveredPerS: 6,
    });

    // A quiet second: the rates fall back to zero while the totals stay.
    vi.advanceTimersByTime(STATS_STREAM_MS);
    await watcher.take(3);
    expect(samples(watcher)[2]).toMatchObject({ published: 3, publishedPerS: 0, deliveredPerS: 0 });
    for (const s of [watcher, subscriber, other]) s.close();
  });

  it("runs one timer for every watcher, only while someone watches, and sends them the same sample", async () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    server = await startServer();
    // An event stream alone starts only the heartbeat timer.
    const subscriber = await openStream(`${server.url}/events?topic=news`);
    await subscriber.until("the stream to open", (s) => s.retry !== undefined);
    expect(vi.getTimerCount()).toBe(1);

    const watchers: OpenStream[] = [];
    for (let i = 0; i < 3; i++) watchers.push(await openStream(`${server.url}/stats/stream`));
    for (const w of watchers) await w.take(1);
    expect(vi.getTimerCount()).toBe(2);

    await server.publish({ topic: "news", data: "x" });
    vi.advanceTimersByTime(STATS_STREAM_MS);
    for (const w of watchers) await w.take(2);
    const second = watchers.map((w) => w.events[1]?.data);
    expect(new Set(second).size).toBe(1);
    expect(JSON.parse(second[0] as string)).toMatchObject({ publishedPerS: 1 });

    for (const w of watchers) w.close();
    await waitFor("the stats timer to stop with the last watcher", () => vi.getTimerCount() === 1);
    expect((await server.stats()).connections).toBe(1);

    // The next watcher starts it again, with rates counted from its own start.
    await server.publish({ topic: "news", data: "y" });
    const again = await openStream(`${server.url}/stats/stream`);
    await again.take(1);
    expect(vi.getTimerCount()).toBe(2);
    vi.advanceTimersByTime(STATS_STREAM_MS);
    await again.take(2);
    expect(samples(again)[1]).toMatchObject({ published: 2, publishedPerS: 0 });
    again.close();
    subscriber.close();
    await waitFor("every timer to stop", () => vi.getTimerCount() === 0);
  });

  it("with SUBSCRIBER_JWT_KEY set, needs the token /stats needs: mercure.subscribe holding *", async () => {
    server = await startServer({ subscriberJwtKey: SECRET });
    const none = await request(`${server.url}/stats/stream`);
    expect(none.statusCode).toBe(401);
    expect(await none.body.json()).toMatchObject({ code: "HERALD_TOKEN_MISSING" });
    const partial = await request(`${server.url}/stats/stream`, {
      headers: { authorization: `Bearer ${await hs256({ subscribe: ["a"] })}` },
    });
    expect(partial.statusCode).toBe(403);
    expect(await partial.body.json()).toMatchObject({ code: "HERALD_TOPIC_FORBIDDEN" });
    // The cookie a browser page sets for EventSource, which cannot send headers.
    const watcher = await openStream(`${server.url}/stats/stream`, {
      cookie: `herald_token=${await hs256({ subscribe: ["*"] })}`,
    });
    const [first] = await watcher.take(1);
    expect(first?.type).toBe("stats");
    watcher.close();
  });

  it("has no HEAD route, which would open a stream that never ends", async () => {
    server = await startServer();
    const res = await request(`${server.url}/stats/stream`, { method: "HEAD" });
    expect(res.statusCode).toBe(404);
    await res.body.dump();
  });
});
