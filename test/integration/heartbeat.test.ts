import { afterEach, describe, expect, it, vi } from "vitest";
import { startServer, type TestServer } from "../helpers/server.js";
import { type OpenStream, openStream } from "../helpers/stream.js";
import { waitFor } from "../helpers/wait.js";

const HEARTBEAT_MS = 15_000;
let server: TestServer | undefined;
afterEach(async () => {
  vi.useRealTimers();
  await server?.close();
});

describe("heartbeats", () => {
  it("come from one shared timer, only while streams are open, and only on idle streams", async () => {
    // Only setInterval is faked: sockets, setImmediate and the test's own waits stay real.
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    server = await startServer({ heartbeatMs: HEARTBEAT_MS });
    expect(vi.getTimerCount()).toBe(0);

    const busy = await openStream(`${server.url}/events?topic=busy`);
    const idle: OpenStream[] = [];
    for (let i = 0; i < 4; i++) idle.push(await openStream(`${server.url}/events?topic=quiet`));
    expect(vi.getTimerCount()).toBe(1);

    vi.advanceTimersByTime(HEARTBEAT_MS);
    for (const s of [busy, ...idle]) await s.until("the first heartbeat", (x) => x.comments.length === 1);

    // Half a period later `busy` gets an event; at the end of the period only the idle streams beat.
    vi.advanceTimersByTime(HEARTBEAT_MS / 2);
    await server.publish({ topic: "busy", data: "work" });
    await busy.take(1);
    vi.advanceTimersByTime(HEARTBEAT_MS / 2);
    for (const s of idle) await s.until("the second heartbeat", (x) => x.comments.length === 2);
    // Anything written to `busy` before this event has arrived once the event has.
    await server.publish({ topic: "busy", data: "marker" });
    await busy.take(2);
    expect(busy.comments).toHaveLength(1);

    // The marker went out just after a tick of the timer; one period later, not two, `busy` beats.
    vi.advanceTimersByTime(HEARTBEAT_MS);
    await busy.until("a heartbeat one period after its last event", (x) => x.comments.length === 2);
    expect(busy.raw.endsWith(":\n\n")).toBe(true);

    for (const s of [busy, ...idle]) s.close();
    await waitFor("the heartbeat timer to stop with the last stream", () => vi.getTimerCount() === 0);
  });

  it("reach a real client at the configured interval", async () => {
    const heartbeatMs = 300;
    server = await startServer({ heartbeatMs });
    const openedAt = Date.now();
    const stream = await openStream(`${server.url}/events`);
    await stream.until("two heartbeats", (s) => s.comments.length >= 2);
    // A stream gets its first heartbeat after half a period of silence at the least, then one
    // each period: timers only ever fire late, so two cannot come sooner than this.
    expect(Date.now() - openedAt).toBeGreaterThanOrEqual(heartbeatMs / 2 + heartbeatMs);
    expect(new Set(stream.comments)).toEqual(new Set([""]));
    expect(stream.events).toEqual([]);
    stream.close();
  });
});
