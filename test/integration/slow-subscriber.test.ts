import { afterEach, describe, expect, it } from "vitest";
import { startServer, type TestServer } from "../helpers/server.js";
import { stalledClient } from "../helpers/stalled-client.js";
import { openStream } from "../helpers/stream.js";
import { waitFor } from "../helpers/wait.js";

const LIMIT = 64 * 1024;
let server: TestServer;
afterEach(() => server.close());

describe("a subscriber that does not read", () => {
  it("is closed once its unsent bytes pass MAX_SUBSCRIBER_BUFFER_BYTES, while readers get every event", async () => {
    server = await startServer({ maxSubscriberBufferBytes: LIMIT, historySize: 50 });
    const stalled = await stalledClient(server.url, "/events?topic=flood");
    const reader = await openStream(`${server.url}/events?topic=flood`);
    const chunk = "x".repeat(32 * 1024);
    let published = 0;
    // Bounded: the kernel's loopback buffers hold a few MB before Herald's own buffer grows.
    while ((await server.stats()).closedTooSlow === 0 && published < 3_000) {
      for (let i = 0; i < 10; i++) {
        await server.publish({ topic: "flood", data: `${published} ${chunk}` });
        published++;
      }
    }
    const stats = await server.stats();
    expect(stats.closedTooSlow).toBe(1);
    expect(stats.connections).toBe(1);
    expect(stats.topics).toEqual({ flood: 1 });

    await server.publish({ topic: "flood", data: "after" });
    await reader.until("every event", (s) => s.events.at(-1)?.data === "after", 20_000);
    expect(reader.events).toHaveLength(published + 1);
    expect(reader.events.slice(0, -1).map((e) => Number(e.data.split(" ")[0]))).toEqual(
      Array.from({ length: published }, (_, i) => i),
    );
    // Once the stalled client reads again it finds its stream ended, and can reconnect with its id.
    stalled.socket.resume();
    await waitFor("the stalled client to see its stream closed", () => stalled.closed());
    reader.close();
  });

  it("holds at most a batch for a client that asks for a long replay and does not read it", async () => {
    server = await startServer({ maxSubscriberBufferBytes: LIMIT * 4, historySize: 600 });
    const chunk = "y".repeat(32 * 1024);
    const ids: string[] = [];
    for (let i = 0; i < 600; i++) ids.push((await server.publish({ topic: "big", data: `${i} ${chunk}` })).id);
    // ~19 MB of history each: without batching, these four would make the server hold ~76 MB.
    const stalled = await Promise.all(
      Array.from({ length: 4 }, () => stalledClient(server.url, "/events?topic=big", `Last-Event-ID: ${ids[0]}\r\n`)),
    );
    const reader = await openStream(`${server.url}/events?topic=big`, { "last-event-id": ids[0] as string });
    await reader.until("the whole replay", (s) => s.events.length === 599, 20_000);
    let peak = 0;
    for (let i = 0; i < 20; i++) {
      peak = Math.max(peak, (await server.stats()).bufferedBytes);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    // Each stalled replay holds one batch unsent: 64 KiB of events, the last of which may overrun it by one event.
    const eventBytes = chunk.length + 64;
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(4 * (LIMIT + eventBytes));

    // Live events queue up behind each stalled replay until its bound, then it is dropped.
    let published = 0;
    while ((await server.stats()).closedTooSlow < 4 && published < 200) {
      await server.publish({ topic: "big", data: `live ${chunk}` });
      published++;
    }
    expect(await server.stats()).toMatchObject({ closedTooSlow: 4, connections: 1 });
    await reader.until("the live events", (s) => s.events.length === 599 + published, 20_000);
    for (const s of stalled) s.socket.destroy();
    reader.close();
  });
});
