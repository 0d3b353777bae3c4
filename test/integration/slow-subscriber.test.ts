import { connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { startServer, type TestServer } from "../helpers/server.js";
import { openStream } from "../helpers/stream.js";
import { waitFor } from "../helpers/wait.js";

const LIMIT = 64 * 1024;
let server: TestServer;
afterEach(() => server.close());

/** A client that asks for a stream and then never reads a byte. */
async function stalledClient(url: string, path: string) {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  await new Promise((resolve) => socket.once("connect", resolve));
  socket.write(`GET ${path} HTTP/1.1\r\nHost: ${hostname}\r\nAccept: text/event-stream\r\n\r\n`);
  socket.pause();
  let closedByServer = false;
  socket.on("close", () => {
    closedByServer = true;
  });
  socket.on("error", () => {});
  return { socket, closed: () => closedByServer };
}

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
});
