import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { MemoryBroker } from "../../src/broker/memory-broker.js";
import { SqliteBroker } from "../../src/broker/sqlite-broker.js";
import { startServer, type TestServer } from "../helpers/server.js";
import { stalledClient } from "../helpers/stalled-client.js";
import { openStream } from "../helpers/stream.js";
import { waitFor } from "../helpers/wait.js";

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe("a Last-Event-ID replay whose client stops reading", () => {
  it("sends a history many pages long in order, only the stream's topics, then the live feed", async () => {
    const broker = new MemoryBroker({ historySize: 5_000 });
    const ids: string[] = [];
    for (let i = 0; i < 4_000; i++) {
      const { event } = await broker.publish({ topic: i % 3 === 0 ? "other" : "mine", data: `${i}` });
      if (event.topic === "mine") ids.push(event.id);
    }
    server = await startServer({ historySize: 5_000 }, 0, { broker });
    const stream = await openStream(`${server.url}/events?topic=mine`, { "last-event-id": ids[0] as string });
    await server.publish({ topic: "mine", data: "live" });
    await stream.until("the replay and the live event", (s) => s.events.at(-1)?.data === "live", 30_000);
    expect(stream.events.slice(0, -1).map((e) => e.lastEventId)).toEqual(ids.slice(1));
    expect(stream.events).toHaveLength(ids.length);
    stream.close();
  });

  it("ends the stream when history is trimmed past the replay's cursor, so the client's resume is a reset", async () => {
    // Between two pages, HISTORY_SIZE new events push the replay's cursor out of history.
    class OvertakingBroker extends MemoryBroker {
      reads = 0;
      override async read(afterPos: string, limit: number) {
        const page = await super.read(afterPos, limit);
        if (++this.reads === 1) for (let i = 0; i < 50; i++) await this.publish({ topic: "other", data: `${i}` });
        return page;
      }
    }
    const broker = new OvertakingBroker({ historySize: 50 });
    const ids: string[] = [];
    for (let i = 0; i < 50; i++) ids.push((await broker.publish({ topic: "t", data: `${i}` })).event.id);
    server = await startServer({ historySize: 50 }, 0, { broker });
    const stream = await openStream(`${server.url}/events?topic=t`, { "last-event-id": ids[0] as string });
    await stream.until("the stream to end", (s) => s.ended, 10_000);
    // What went out (if anything) has no gap; the rest could not be sent without one.
    const got = stream.events.map((e) => e.lastEventId);
    expect(got).toEqual(ids.slice(1, 1 + got.length));
    expect(got.length).toBeLessThan(49);
    const resumed = await openStream(`${server.url}/events?topic=t`, {
      "last-event-id": got.at(-1) ?? (ids[0] as string),
    });
    const [first] = await resumed.take(1);
    expect(first?.type).toBe("reset");
    resumed.close();
  });

  it("is dropped once a batch does not drain within REPLAY_DRAIN_TIMEOUT_MS, with no live event to trip the buffer bound", async () => {
    const history = 3_000;
    const broker = SqliteBroker.open({
      path: join(mkdtempSync(join(tmpdir(), "herald-replay-")), "herald.db"),
      historySize: history,
    });
    const chunk = "z".repeat(4 * 1024);
    const ids: string[] = [];
    // Straight into the broker, in batches that share a commit: ~12 MB of history.
    for (let i = 0; i < history; i += 500) {
      const batch = Array.from({ length: 500 }, (_, j) => broker.publish({ topic: "big", data: `${i + j} ${chunk}` }));
      for (const { event } of await Promise.all(batch)) ids.push(event.id);
    }
    server = await startServer({ broker: "sqlite", historySize: history, replayDrainTimeoutMs: 300 }, 0, { broker });
    const stalled = await Promise.all(
      Array.from({ length: 5 }, () =>
        stalledClient(server?.url ?? "", "/events?topic=big", `Last-Event-ID: ${ids[0]}\r\n`),
      ),
    );
    // No live event is published: only the replay's own deadline can end these streams.
    await waitFor(
      "the stalled replays to be dropped",
      async () => (await server?.stats())?.closedTooSlow === 5,
      20_000,
    );
    expect(await server.stats()).toMatchObject({ connections: 0, closedTooSlow: 5 });
    for (const s of stalled) expect(s.closed()).toBe(false);

    for (const s of stalled) s.socket.destroy();
  });
});
