import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import { EventSource } from "eventsource";
import { afterEach, describe, expect, it } from "vitest";
import type { BuildAppOptions } from "../../src/app.js";
import { MemoryBroker } from "../../src/broker/memory-broker.js";
import { startServer, type TestServer } from "../helpers/server.js";
import { openStream } from "../helpers/stream.js";
import { waitFor } from "../helpers/wait.js";

const servers: TestServer[] = [];
async function start(overrides: Parameters<typeof startServer>[0] = {}, options: BuildAppOptions = {}) {
  const server = await startServer(overrides, 0, options);
  servers.push(server);
  return server;
}
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/** A promise the test opens by hand; `waiting` tells that someone awaits it. */
function gate() {
  let open: () => void = () => {};
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  const g = {
    waiting: false,
    open,
    get promise() {
      g.waiting = true;
      return promise;
    },
  };
  return g;
}

async function publishMany(server: TestServer, topic: string, n: number, from = 0) {
  const ids: string[] = [];
  for (let i = from; i < from + n; i++) ids.push((await server.publish({ topic, data: `${i}` })).id);
  return ids;
}

describe("replay with Last-Event-ID", () => {
  it("sends every retained event after the header's id, in order, then the live feed", async () => {
    const server = await start();
    const ids = await publishMany(server, "t", 5);
    await server.publish({ topic: "other", data: "not mine" });
    const stream = await openStream(`${server.url}/events?topic=t`, { "last-event-id": ids[1] as string });
    await stream.take(3);
    const live = await server.publish({ topic: "t", data: "live" });
    const events = await stream.take(4);
    expect(events.map((e) => [e.lastEventId, e.data])).toEqual([
      [ids[2], "2"],
      [ids[3], "3"],
      [ids[4], "4"],
      [live.id, "live"],
    ]);
    expect((await server.stats()).replays).toBe(1);
    stream.close();
  });

  it("takes the id from the lastEventId query parameter, and prefers the header when both are sent", async () => {
    const server = await start();
    const ids = await publishMany(server, "t", 4);
    const byQuery = await openStream(`${server.url}/events?topic=t&lastEventId=${ids[2]}`);
    expect((await byQuery.take(1)).map((e) => e.data)).toEqual(["3"]);
    const both = await openStream(`${server.url}/events?topic=t&lastEventId=${ids[0]}`, {
      "last-event-id": ids[1] as string,
    });
    expect((await both.take(2)).map((e) => e.data)).toEqual(["2", "3"]);
    byQuery.close();
    both.close();
  });

  it("sends nothing to replay when the id is the newest, and does not reset", async () => {
    const server = await start();
    const ids = await publishMany(server, "t", 2);
    const stream = await openStream(`${server.url}/events?topic=t`, { "last-event-id": ids[1] as string });
    await server.publish({ topic: "t", data: "next" });
    expect((await stream.take(1)).map((e) => e.data)).toEqual(["next"]);
    stream.close();
  });

  it("sends a reset event, then live events, when the id has left history", async () => {
    const server = await start({ historySize: 3 });
    const ids = await publishMany(server, "t", 6);
    const stream = await openStream(`${server.url}/events?topic=t`, { "last-event-id": ids[0] as string });
    const [reset] = await stream.take(1);
    expect(reset?.type).toBe("reset");
    // The reset carries the newest id, so the client's next reconnect resumes from now.
    expect(reset?.lastEventId).toBe(ids[5]);
    expect(JSON.parse(reset?.data ?? "")).toMatchObject({
      reason: "last-event-id-not-in-history",
      lastEventId: ids[0],
      message: expect.stringContaining("missed"),
    });
    await server.publish({ topic: "t", data: "live" });
    expect((await stream.take(2)).map((e) => e.data)[1]).toBe("live");
    expect((await server.stats()).resets).toBe(1);
    stream.close();
  });

  it("sends a reset for an id from before a restart", async () => {
    const first = await start();
    const [oldId] = await publishMany(first, "t", 1);
    await first.close();
    const second = await start();
    const stream = await openStream(`${second.url}/events?topic=t`, { "last-event-id": oldId as string });
    const [reset] = await stream.take(1);
    expect(reset?.type).toBe("reset");
    expect(reset?.lastEventId).toBe("earliest");
    stream.close();
  });

  it("has no gap and no duplicate between replay and live while publishes race the reconnect", async ({ skip }) => {
    // Left out of mutation runs (vitest.stryker.config.ts sets the variable): it replays megabytes for
    // every mutant it covers, and its "live events arrived mid-replay" check needs timing a loaded machine lacks.
    skip(process.env.HERALD_MUTATION_RUN === "1", "left out of mutation runs");
    const server = await start({ historySize: 5_000 });
    // 160 events of 60 KiB: each replay below is 7 to 10 MB, more than the socket buffers of a
    // client that does not read can take (about 4 MB on Linux), so it stalls mid-way, waiting for
    // the socket to drain, while the live events of the burst arrive.
    const pad = "x".repeat(60 * 1024);
    const before: string[] = [];
    for (let i = 0; i < 160; i++) before.push((await server.publish({ topic: "race", data: `${i} ${pad}` })).id);
    // A subscriber from here on sees the one true order of the live events.
    const reference = await openStream(`${server.url}/events?topic=race`);
    const total = 300;
    let next = 0;
    const publisher = async () => {
      while (next < total) {
        const i = next++;
        await server.publish({ topic: "race", data: `live ${i}` });
      }
    };
    const publishing = Promise.all(Array.from({ length: 8 }, publisher));
    // Clients reconnect at different moments of the burst, each from a different id, and read nothing yet.
    const resumed = [];
    for (const [k, from] of [before[0], before[40]].entries()) {
      const stream = await openStream(
        `${server.url}/events?topic=race`,
        { "last-event-id": from as string },
        { paused: true },
      );
      resumed.push({ from: from as string, stream });
      await reference.until("the burst to progress", (s) => s.events.length >= (k + 1) * 100, 10_000);
    }
    await publishing;
    const stats = await server.stats();
    expect(stats.replays).toBe(2);
    // Had both replays been handed to their sockets, the hub would have delivered this many events:
    // fewer means the live events arrived while a replay was still under way.
    expect(stats.delivered).toBeLessThan(total * 3 + 159 + 119);
    for (const { stream } of resumed) stream.resume();

    const end = await server.publish({ topic: "race", data: "end" });
    const done = (s: { events: { lastEventId: string }[] }) => s.events.at(-1)?.lastEventId === end.id;
    await reference.until("the end marker", done, 10_000);
    const order = [...before, ...reference.events.map((e) => e.lastEventId)];
    expect(order).toHaveLength(160 + total + 1);
    for (const { from, stream } of resumed) {
      await stream.until("the end marker", done, 30_000);
      expect(stream.events.map((e) => e.lastEventId)).toEqual(order.slice(order.indexOf(from) + 1));
      stream.close();
    }
    reference.close();
  }, 60_000);

  it("neither loses nor repeats live events published while history is being read", async () => {
    // A history read that the test holds open on both sides: the window in which a slower engine
    // (Redis, SQLite) sees live events arrive before, and after, it has read.
    const before = gate();
    const after = gate();
    class GatedHistoryBroker extends MemoryBroker {
      override async locate(id: string) {
        await before.promise;
        return super.locate(id);
      }
      override async read(afterPos: string, limit: number) {
        const result = await super.read(afterPos, limit);
        await after.promise;
        return result;
      }
    }
    const server = await start({}, { broker: new GatedHistoryBroker({ historySize: 100 }) });
    const ids = await publishMany(server, "t", 3);
    const stream = await openStream(`${server.url}/events?topic=t`, { "last-event-id": ids[0] as string });
    await stream.until("the stream to open", (s) => s.retry !== undefined);
    // After subscribing, before the read: history and the live feed both hold these.
    await publishMany(server, "t", 3, 3);
    before.open();
    await waitFor("history to be read", () => after.waiting);
    // After the read, before the replay: only the live feed holds these.
    await publishMany(server, "t", 2, 6);
    after.open();
    await publishMany(server, "t", 1, 8);
    await stream.take(8);
    await server.publish({ topic: "t", data: "end" });
    await stream.take(9);
    expect(stream.events.map((e) => e.data)).toEqual(["1", "2", "3", "4", "5", "6", "7", "8", "end"]);
    stream.close();
  });

  it("neither repeats nor reorders when the live feed lags behind history, as a Redis node's reader can", async () => {
    // A broker whose live feed the test holds back and releases, while history is always current.
    class LaggingBroker extends MemoryBroker {
      held: (() => void)[] = [];
      override subscribe(onEvent: Parameters<MemoryBroker["subscribe"]>[0]) {
        return super.subscribe((event) => this.held.push(() => onEvent(event)));
      }
      release() {
        for (const deliver of this.held.splice(0)) deliver();
      }
    }
    const broker = new LaggingBroker({ historySize: 100 });
    const server = await start({}, { broker });
    const ids = await publishMany(server, "t", 4);
    const stream = await openStream(`${server.url}/events?topic=t`, { "last-event-id": ids[1] as string });
    await stream.take(2);
    // The live feed now catches up with events the client already has from the replay, or had before.
    broker.release();
    await server.publish({ topic: "t", data: "live" });
    broker.release();
    await stream.take(3);
    await server.publish({ topic: "t", data: "end" });
    broker.release();
    await stream.until("the end marker", (s) => s.events.at(-1)?.data === "end");
    expect(stream.events.map((e) => e.data)).toEqual(["2", "3", "live", "end"]);
    stream.close();
  });

  it("lets an EventSource client that lost its connection resume where it was, by itself", async () => {
    const server = await start({ retryMs: 50 });
    // Every stream request the server gets: the Last-Event-ID it carried, and its socket to cut.
    const requests: { lastEventId: string | undefined; socket: Socket }[] = [];
    server.app.server.on("request", (req: IncomingMessage) => {
      if (req.method === "GET" && req.url?.startsWith("/events")) {
        requests.push({ lastEventId: req.headers["last-event-id"] as string | undefined, socket: req.socket });
      }
    });
    const source = new EventSource(`${server.url}/events?topic=t`);
    const received: string[] = [];
    const waiters: (() => void)[] = [];
    source.onmessage = (e) => {
      received.push(e.data);
      for (const w of waiters.splice(0)) w();
    };
    const receivedCount = (n: number) =>
      new Promise<void>((resolve) => {
        const check = () => (received.length >= n ? resolve() : waiters.push(check));
        check();
      });
    try {
      await new Promise((resolve) => {
        source.onopen = resolve;
      });
      const ids = await publishMany(server, "t", 2);
      await receivedCount(2);
      requests[0]?.socket.destroy();
      await waitFor("the server to see the cut", async () => (await server.stats()).connections === 0);
      await publishMany(server, "t", 3, 2);
      await receivedCount(5);
      await publishMany(server, "t", 1, 5);
      await receivedCount(6);
      expect(received).toEqual(["0", "1", "2", "3", "4", "5"]);
      expect(requests.map((r) => r.lastEventId)).toEqual([undefined, ids[1]]);
    } finally {
      source.close();
    }
  });
});
