import { afterEach, describe, expect, it, vi } from "vitest";
import { TopicGrant } from "../../src/auth/topic-grant.js";
import type { StoredEvent } from "../../src/broker/broker.js";
import { MemoryBroker } from "../../src/broker/memory-broker.js";
import { SqliteBroker } from "../../src/broker/sqlite-broker.js";
import { Hub, type HubOptions, REPLAY_PAGE_EVENTS } from "../../src/hub/hub.js";
import type { SseStream } from "../../src/sse/sse-stream.js";
import { silentLogger } from "../helpers/server.js";
import { type ParsedEvent, SseParser } from "../helpers/sse-parser.js";

/**
 * The hub against a real MemoryBroker and a stand-in for the one stream method set it uses
 * (send, drain, end, dropTooSlow, onClose, closed): what it sends is parsed back with the
 * spec-following parser, so these tests see the bytes a client would.
 */
class FakeStream {
  readonly #parser = new SseParser();
  readonly #onClose: (() => void)[] = [];
  closed = false;
  ended = false;
  /** The `unsentBytes` the hub reported when it dropped this stream as too slow. */
  droppedTooSlow: number | "default" | undefined;
  /** What `drain()` answers; a replay waits on it after each batch. */
  drainResult: Promise<boolean> = Promise.resolve(true);
  drains = 0;
  sentBuffers: Buffer[] = [];

  get events(): ParsedEvent[] {
    return this.#parser.events;
  }
  get data(): string[] {
    return this.events.map((e) => e.data);
  }
  send(bytes: Buffer): void {
    if (this.closed) throw new Error("send after close");
    this.sentBuffers.push(bytes);
    this.#parser.feed(bytes.toString("utf8"));
  }
  drain(): Promise<boolean> {
    this.drains++;
    return this.drainResult;
  }
  onClose(handler: () => void): void {
    this.#onClose.push(handler);
  }
  end(): void {
    this.ended = true;
    this.close();
  }
  dropTooSlow(unsentBytes?: number): void {
    this.droppedTooSlow = unsentBytes ?? "default";
    this.close();
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const handler of this.#onClose) handler();
  }
  get asStream(): SseStream {
    return this as unknown as SseStream;
  }
}

/** A promise the test opens by hand. */
function gate() {
  let open: () => void = () => {};
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/** Lets the event loop turn until `check` holds (at most 1,000 turns): for code awaiting only resolved promises. */
async function turnsUntil(check: () => boolean) {
  for (let i = 0; i < 1_000 && !check(); i++) await new Promise((resolve) => setImmediate(resolve));
  expect(check()).toBe(true);
}

const hubs: Hub[] = [];
afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(hubs.splice(0).map((h) => h.stop()));
});

async function startHub(broker: MemoryBroker, options: Partial<HubOptions> = {}) {
  const hub = new Hub({
    broker,
    replayLimit: 1_000,
    maxPendingBytes: 1 << 20,
    maxEventBytes: 1 << 20,
    log: silentLogger,
    ...options,
  });
  await hub.start();
  hubs.push(hub);
  return hub;
}

async function publishAll(broker: MemoryBroker, topic: string, data: string[]): Promise<StoredEvent[]> {
  const events: StoredEvent[] = [];
  for (const d of data) events.push((await broker.publish({ topic, data: d })).event);
  return events;
}

describe("Hub, live", () => {
  it("sends each event of the stream's topics, once, in order, and counts deliveries", async () => {
    const broker = new MemoryBroker({ historySize: 100 });
    const hub = await startHub(broker);
    const a = new FakeStream();
    const any = new FakeStream();
    await hub.subscribe(a.asStream, ["a", "a/{id}"]);
    await hub.subscribe(any.asStream, "*");
    await broker.publish({ topic: "a", data: "1" });
    await broker.publish({ topic: "b", data: "2" });
    await broker.publish({ topic: "a/7", data: "3" });
    await broker.publish({ topic: "b", data: "4", alternates: ["a"] });
    expect(a.data).toEqual(["1", "3", "4"]);
    expect(any.data).toEqual(["1", "2", "3", "4"]);
    expect(hub.counters.delivered).toBe(7);
    expect(hub.counters.published).toBe(0);
  });

  it("sends a private event only where the grant covers one of its topics", async () => {
    const broker = new MemoryBroker({ historySize: 100 });
    const hub = await startHub(broker);
    const none = new FakeStream();
    const covered = new FakeStream();
    const all = new FakeStream();
    const other = new FakeStream();
    await hub.subscribe(none.asStream, "*");
    await hub.subscribe(covered.asStream, "*", undefined, new TopicGrant(["secret/{id}"]));
    await hub.subscribe(all.asStream, "*", undefined, new TopicGrant(["*"]));
    await hub.subscribe(other.asStream, "*", undefined, new TopicGrant(["elsewhere"]));
    await broker.publish({ topic: "public", data: "p" });
    await broker.publish({ topic: "x", alternates: ["secret/1"], data: "s", private: true });
    expect(none.data).toEqual(["p"]);
    expect(covered.data).toEqual(["p", "s"]);
    expect(all.data).toEqual(["p", "s"]);
    expect(other.data).toEqual(["p"]);
    expect(hub.counters.delivered).toBe(6);
  });

  it("wraps events in an envelope for envelope streams, and encodes each format once per event", async () => {
    const broker = new MemoryBroker({ historySize: 100 });
    const hub = await startHub(broker);
    const plain1 = new FakeStream();
    const plain2 = new FakeStream();
    const env1 = new FakeStream();
    const env2 = new FakeStream();
    await hub.subscribe(plain1.asStream, ["t"]);
    await hub.subscribe(env1.asStream, ["t"], undefined, undefined, true);
    await hub.subscribe(plain2.asStream, ["t"]);
    await hub.subscribe(env2.asStream, ["t"], undefined, undefined, true);
    const { event } = await broker.publish({ topic: "t", data: "hi", event: "greet" });
    expect(plain1.events).toEqual([{ type: "greet", data: "hi", lastEventId: event.id }]);
    expect(plain1.sentBuffers[0]).toBe(plain2.sentBuffers[0]);
    expect(env1.sentBuffers[0]).toBe(env2.sentBuffers[0]);
    const [wrapped] = env1.events;
    expect(wrapped?.type).toBe("message");
    expect(wrapped?.lastEventId).toBe(event.id);
    expect(JSON.parse(wrapped?.data ?? "")).toEqual({
      topic: "t",
      event: "greet",
      data: "hi",
      time: new Date(event.time).toISOString(),
    });
  });

  it("stops sending to a stream once it closes, and counts its topics until then", async () => {
    const broker = new MemoryBroker({ historySize: 100 });
    const hub = await startHub(broker);
    const s = new FakeStream();
    await hub.subscribe(s.asStream, ["a", "b"]);
    expect(hub.topicCounts()).toEqual({ a: 1, b: 1 });
    s.close();
    expect(hub.topicCounts()).toEqual({});
    await broker.publish({ topic: "a", data: "after" });
    expect(s.data).toEqual([]);
  });

  it("stops receiving the broker's events after stop()", async () => {
    const broker = new MemoryBroker({ historySize: 100 });
    const hub = await startHub(broker);
    const s = new FakeStream();
    await hub.subscribe(s.asStream, "*");
    await broker.publish({ topic: "a", data: "1" });
    await hub.stop();
    await broker.publish({ topic: "a", data: "2" });
    expect(s.data).toEqual(["1"]);
  });

  it("ends every local stream when the broker reports a gap in its live feed", async () => {
    let reportGap: (() => void) | undefined;
    class GappyBroker extends MemoryBroker {
      override async subscribe(onEvent: (event: StoredEvent) => void, onGap?: () => void) {
        reportGap = onGap;
        return super.subscribe(onEvent);
      }
    }
    const hub = await startHub(new GappyBroker({ historySize: 10 }));
    const streams = [new FakeStream(), new FakeStream(), new FakeStream()];
    await hub.subscribe(streams[0]?.asStream as SseStream, ["a"]);
    await hub.subscribe(streams[1]?.asStream as SseStream, "*");
    await hub.subscribe(streams[2]?.asStream as SseStream, ["b/{x}"]);
    reportGap?.();
    expect(streams.map((s) => s.ended)).toEqual([true, true, true]);
    expect(hub.counters.feedGaps).toBe(1);
  });
});

describe("Hub.publish", () => {
  it("counts new events, not duplicates, and refuses the reserved id and oversized events before storing", async () => {
    const broker = new MemoryBroker({ historySize: 100 });
    const hub = await startHub(broker, { maxEventBytes: 20 });
    await hub.publish({ topic: "a", data: "x", id: "1" });
    expect((await hub.publish({ topic: "a", data: "x", id: "1" })).duplicate).toBe(true);
    expect(hub.counters.published).toBe(1);
    await expect(hub.publish({ topic: "a", data: "x", id: "earliest" })).rejects.toMatchObject({
      code: "HERALD_INVALID_EVENT",
      message: expect.stringContaining('id "earliest" is reserved'),
    });
    // "id: 1\n" + "data: 123456\n" + "\n" is exactly 20 bytes; one more byte of data is refused.
    await hub.publish({ topic: "a", data: "123456", id: "2" });
    await expect(hub.publish({ topic: "a", data: "1234567", id: "3" })).rejects.toMatchObject({
      code: "HERALD_EVENT_TOO_LARGE",
      statusCode: 413,
    });
    expect((await broker.locate("3")).found).toBe(false);
    expect(hub.counters.published).toBe(2);
  });
});

describe("Hub, replay from a Last-Event-ID", () => {
  it("sends the stream's events after the id, then the live feed, and counts the replay", async () => {
    const broker = new MemoryBroker({ historySize: 100 });
    const hub = await startHub(broker);
    const [first] = await publishAll(broker, "a", ["0"]);
    await broker.publish({ topic: "b", data: "other" });
    await publishAll(broker, "a", ["1", "2"]);
    const s = new FakeStream();
    await hub.subscribe(s.asStream, ["a"], first?.id);
    await broker.publish({ topic: "a", data: "live" });
    expect(s.data).toEqual(["1", "2", "live"]);
    expect(hub.counters).toMatchObject({ replays: 1, resets: 0, delivered: 3 });
  });

  it("replays every retained event from earliest, and nothing (no reset) from the newest id", async () => {
    const broker = new MemoryBroker({ historySize: 100 });
    const hub = await startHub(broker);
    const events = await publishAll(broker, "a", ["1", "2"]);
    const fromEarliest = new FakeStream();
    await hub.subscribe(fromEarliest.asStream, ["a"], "earliest");
    const fromNewest = new FakeStream();
    await hub.subscribe(fromNewest.asStream, ["a"], events[1]?.id);
    expect(fromEarliest.data).toEqual(["1", "2"]);
    expect(fromNewest.events).toEqual([]);
    expect(hub.counters).toMatchObject({ replays: 2, resets: 0 });
  });

  it("marks replayed events in an envelope, and live ones not", async () => {
    const broker = new MemoryBroker({ historySize: 100 });
    const hub = await startHub(broker);
    await publishAll(broker, "a", ["old"]);
    const s = new FakeStream();
    await hub.subscribe(s.asStream, ["a"], "earliest", undefined, true);
    await broker.publish({ topic: "a", data: "new" });
    const envelopes = s.events.map((e) => JSON.parse(e.data) as { data: string; replayed?: boolean });
    expect(envelopes.map((e) => [e.data, e.replayed])).toEqual([
      ["old", true],
      ["new", undefined],
    ]);
  });

  it("replays a private event only where the grant covers it", async () => {
    const broker = new MemoryBroker({ historySize: 100 });
    const hub = await startHub(broker);
    await broker.publish({ topic: "s", data: "secret", private: true });
    await broker.publish({ topic: "p", data: "public" });
    const without = new FakeStream();
    const withGrant = new FakeStream();
    await hub.subscribe(without.asStream, "*", "earliest");
    await hub.subscribe(withGrant.asStream, "*", "earliest", new TopicGrant(["s"]));
    expect(without.data).toEqual(["public"]);
    expect(withGrant.data).toEqual(["secret", "public"]);
  });

  it("sends a reset carrying the newest id for an id not in history, then the live feed", async () => {
    const broker = new MemoryBroker({ historySize: 100 });
    const hub = await startHub(broker);
    const events = await publishAll(broker, "a", ["1", "2"]);
    const s = new FakeStream();
    const unknown = `gone-${"x".repeat(300)}`;
    await hub.subscribe(s.asStream, ["a"], unknown);
    await broker.publish({ topic: "a", data: "live" });
    const [reset, live] = s.events;
    expect(reset?.type).toBe("reset");
    expect(reset?.lastEventId).toBe(events[1]?.id);
    expect(JSON.parse(reset?.data ?? "")).toEqual({
      reason: "last-event-id-not-in-history",
      lastEventId: unknown.slice(0, 256),
      message:
        "The Last-Event-ID is no longer in history (too old, or from before a restart): events may have been missed. The stream continues live.",
    });
    expect(live?.data).toBe("live");
    expect(s.events).toHaveLength(2);
    expect(hub.counters).toMatchObject({ resets: 1, replays: 0 });
  });

  it("sends the reset plain on an envelope stream, with the id earliest on an empty history", async () => {
    const broker = new MemoryBroker({ historySize: 100 });
    const hub = await startHub(broker);
    const s = new FakeStream();
    await hub.subscribe(s.asStream, ["a"], "unknown", undefined, true);
    expect(s.events.map((e) => [e.type, e.lastEventId])).toEqual([["reset", "earliest"]]);
  });

  it("neither loses nor repeats live events published while each history page is read", async () => {
    class RacingBroker extends MemoryBroker {
      racing = false;
      override async read(afterPos: string, limit: number) {
        const page = await super.read(afterPos, limit);
        // A live event lands after the page was read: it is in `pending`, and maybe in the next page too.
        if (this.racing) await this.publish({ topic: "a", data: `during ${afterPos}` });
        return page;
      }
    }
    const broker = new RacingBroker({ historySize: 1_000 });
    const hub = await startHub(broker);
    await publishAll(
      broker,
      "a",
      Array.from({ length: 40 }, (_, i) => `${i}`),
    );
    const s = new FakeStream();
    broker.racing = true;
    await hub.subscribe(s.asStream, ["a"], "earliest");
    broker.racing = false;
    await broker.publish({ topic: "a", data: "after" });
    const history = await broker.read("", 1_000);
    expect(history.filter((e) => e.data.startsWith("during")).length).toBeGreaterThan(1);
    expect(s.data).toEqual(history.map((e) => e.data));
    expect(new Set(s.data).size).toBe(s.data.length);
  });

  it("drops live events at or before the replay's last position when the live feed lags history", async () => {
    // A live feed that hands events over only when the test says: as a Redis node's reader can lag.
    const held: StoredEvent[] = [];
    let deliver: (event: StoredEvent) => void = () => {};
    class LaggingBroker extends MemoryBroker {
      override async subscribe(onEvent: (event: StoredEvent) => void) {
        deliver = onEvent;
        return super.subscribe((event) => held.push(event));
      }
    }
    const broker = new LaggingBroker({ historySize: 100 });
    const hub = await startHub(broker);
    const [start] = await publishAll(broker, "a", ["0"]);
    for (const event of held.splice(0)) deliver(event);
    const s = new FakeStream();
    await publishAll(broker, "a", ["1", "2"]);
    await hub.subscribe(s.asStream, ["a"], start?.id);
    expect(s.data).toEqual(["1", "2"]);
    await publishAll(broker, "a", ["3"]);
    // The lagging feed now hands over 1, 2 (already replayed) and 3.
    for (const event of held.splice(0)) deliver(event);
    await publishAll(broker, "a", ["4"]);
    for (const event of held.splice(0)) deliver(event);
    expect(s.data).toEqual(["1", "2", "3", "4"]);
  });

  it("holds live events that arrive during the replay and sends them after it, in order", async () => {
    const readGate = gate();
    class SlowBroker extends MemoryBroker {
      override async read(afterPos: string, limit: number) {
        const page = await super.read(afterPos, limit);
        await readGate.promise;
        return page;
      }
    }
    const broker = new SlowBroker({ historySize: 100 });
    const hub = await startHub(broker);
    await publishAll(broker, "a", ["1", "2"]);
    const s = new FakeStream();
    const subscribing = hub.subscribe(s.asStream, ["a"], "earliest");
    await vi.waitFor(() => expect(hub.topicCounts()).toEqual({ a: 1 }));
    await publishAll(broker, "a", ["3", "4"]);
    expect(s.data).toEqual([]);
    readGate.open();
    await subscribing;
    expect(s.data).toEqual(["1", "2", "3", "4"]);
  });

  it("drops a stream whose held live events outgrow maxPendingBytes during its replay", async () => {
    const readGate = gate();
    class SlowBroker extends MemoryBroker {
      override async read(afterPos: string, limit: number) {
        const page = await super.read(afterPos, limit);
        await readGate.promise;
        return page;
      }
    }
    const broker = new SlowBroker({ historySize: 100 });
    const hub = await startHub(broker, { maxPendingBytes: 100 });
    await publishAll(broker, "a", ["old"]);
    const s = new FakeStream();
    const subscribing = hub.subscribe(s.asStream, ["a"], "earliest");
    await vi.waitFor(() => expect(hub.topicCounts()).toEqual({ a: 1 }));
    // Each held event is about 60 bytes on the wire: the first fits in 100, the second does not.
    await broker.publish({ topic: "a", data: "x".repeat(40) });
    expect(s.droppedTooSlow).toBeUndefined();
    await broker.publish({ topic: "a", data: "x".repeat(40) });
    expect(s.droppedTooSlow).toBeGreaterThan(100);
    readGate.open();
    await subscribing;
    expect(s.events).toEqual([]);
  });

  it("reads history in pages of 16 events first, then at most REPLAY_PAGE_EVENTS, fewer for large events", async () => {
    const limits: number[] = [];
    class CountingBroker extends MemoryBroker {
      override async read(afterPos: string, limit: number) {
        limits.push(limit);
        return super.read(afterPos, limit);
      }
    }
    const small = new CountingBroker({ historySize: 2_000 });
    const hub = await startHub(small);
    await publishAll(
      small,
      "a",
      Array.from({ length: 600 }, (_, i) => `${i}`),
    );
    const s = new FakeStream();
    await hub.subscribe(s.asStream, ["a"], "earliest");
    expect(s.events).toHaveLength(600);
    expect(limits.slice(0, 3)).toEqual([16, REPLAY_PAGE_EVENTS, REPLAY_PAGE_EVENTS]);

    limits.length = 0;
    const large = new CountingBroker({ historySize: 100 });
    const hub2 = await startHub(large);
    // 100 KiB each: a page of about REPLAY_PAGE_BYTES (256 KiB) holds 2.
    await publishAll(
      large,
      "a",
      Array.from({ length: 20 }, (_, i) => `${i} ${"x".repeat(100 * 1024)}`),
    );
    const l = new FakeStream();
    await hub2.subscribe(l.asStream, ["a"], "earliest");
    expect(l.events).toHaveLength(20);
    expect(limits).toEqual([16, 2, 2]);
  });

  it("waits for the socket to drain after each 64 KiB batch of replay", async () => {
    const broker = new MemoryBroker({ historySize: 100 });
    const hub = await startHub(broker);
    // 10 events of 16 KiB (and a few bytes of framing): 4 fill the first 64 KiB batch.
    await publishAll(
      broker,
      "a",
      Array.from({ length: 10 }, () => "x".repeat(16 * 1024)),
    );
    const s = new FakeStream();
    let release = () => {};
    s.drainResult = new Promise<boolean>((resolve) => {
      release = () => resolve(true);
    });
    const subscribing = hub.subscribe(s.asStream, ["a"], "earliest");
    await vi.waitFor(() => expect(s.drains).toBe(1));
    expect(s.events).toHaveLength(4);
    release();
    await subscribing;
    expect(s.events).toHaveLength(10);
    expect(s.drains).toBe(2);
  });

  it("drops a replaying stream that does not drain within the deadline, and counts it", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const broker = new MemoryBroker({ historySize: 100 });
    const hub = await startHub(broker, { replayDrainTimeoutMs: 5_000 });
    await publishAll(
      broker,
      "a",
      Array.from({ length: 10 }, () => "x".repeat(16 * 1024)),
    );
    const s = new FakeStream();
    s.drainResult = new Promise<boolean>(() => {});
    const subscribing = hub.subscribe(s.asStream, ["a"], "earliest");
    await turnsUntil(() => s.drains === 1);
    await vi.advanceTimersByTimeAsync(4_999);
    expect(s.closed).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await subscribing;
    expect(s.droppedTooSlow).toBe("default");
    expect(hub.counters.replaysStalled).toBe(1);
    expect(s.events).toHaveLength(4);
  });

  it("waits for a drain once a batch reaches exactly 64 KiB", async () => {
    const broker = new MemoryBroker({ historySize: 100 });
    const hub = await startHub(broker);
    // "id: eN\n" (7 bytes) + "data: " and the data and "\n" (7 + 16,369) + "\n": 16,384 bytes each.
    for (let i = 1; i <= 6; i++) await broker.publish({ topic: "a", id: `e${i}`, data: "x".repeat(16_369) });
    const s = new FakeStream();
    let closed: (drained: boolean) => void = () => {};
    s.drainResult = new Promise<boolean>((resolve) => {
      closed = resolve;
    });
    const subscribing = hub.subscribe(s.asStream, ["a"], "earliest");
    await turnsUntil(() => s.drains === 1);
    expect(s.sentBuffers.map((b) => b.length)).toEqual([16_384, 16_384, 16_384, 16_384]);
    s.close();
    closed(false);
    await subscribing;
  });

  it("sends at most replayLimit events in one replay", async () => {
    const broker = new MemoryBroker({ historySize: 100 });
    const hub = await startHub(broker, { replayLimit: 3 });
    await publishAll(broker, "a", ["1", "2", "3", "4", "5"]);
    const s = new FakeStream();
    await hub.subscribe(s.asStream, ["a"], "earliest");
    expect(s.data).toEqual(["1", "2", "3"]);
    expect(hub.counters.delivered).toBe(3);
  });

  it("replays nothing from earliest on an empty history, then goes live", async () => {
    const broker = new MemoryBroker({ historySize: 100 });
    const hub = await startHub(broker);
    const s = new FakeStream();
    await hub.subscribe(s.asStream, ["a"], "earliest");
    await broker.publish({ topic: "a", data: "live" });
    expect(s.data).toEqual(["live"]);
    expect(hub.counters).toMatchObject({ replays: 1, resets: 0 });
  });

  it("holds live events up to exactly maxPendingBytes during a replay", async () => {
    const readGate = gate();
    class SlowBroker extends MemoryBroker {
      override async read(afterPos: string, limit: number) {
        const page = await super.read(afterPos, limit);
        await readGate.promise;
        return page;
      }
    }
    const broker = new SlowBroker({ historySize: 100 });
    // One held event of "id: p1\n" + "data: xxxxxxxxxx\n" + "\n": 7 + 17 + 1 bytes.
    const hub = await startHub(broker, { maxPendingBytes: 25 });
    await publishAll(broker, "a", ["old"]);
    const s = new FakeStream();
    const subscribing = hub.subscribe(s.asStream, ["a"], "earliest");
    await vi.waitFor(() => expect(hub.topicCounts()).toEqual({ a: 1 }));
    await broker.publish({ topic: "a", id: "p1", data: "x".repeat(10) });
    readGate.open();
    await subscribing;
    expect(s.droppedTooSlow).toBeUndefined();
    expect(s.data).toEqual(["old", "x".repeat(10)]);
  });

  it("stops the replay when the stream closes while it waits for a drain", async () => {
    const broker = new MemoryBroker({ historySize: 100 });
    const hub = await startHub(broker);
    await publishAll(
      broker,
      "a",
      Array.from({ length: 10 }, () => "x".repeat(16 * 1024)),
    );
    const s = new FakeStream();
    s.drainResult = Promise.resolve(false);
    await hub.subscribe(s.asStream, ["a"], "earliest");
    expect(s.events).toHaveLength(4);
    expect(s.droppedTooSlow).toBeUndefined();
    expect(hub.counters.replaysStalled).toBe(0);
  });
});

describe("Hub, opening the response after the Last-Event-ID lookup", () => {
  it("tells the opener the id the stream resumes after: the id, the newest id after a reset, earliest, or none", async () => {
    const broker = new MemoryBroker({ historySize: 100 });
    const hub = await startHub(broker);
    const seen: (string | undefined)[] = [];
    const opener = (resumedAfter: string | undefined) => {
      seen.push(resumedAfter);
      return new FakeStream().asStream;
    };
    await hub.subscribe(opener, ["a"], "unknown");
    const [first] = await publishAll(broker, "a", ["1", "2"]);
    await hub.subscribe(opener, ["a"], first?.id);
    await hub.subscribe(opener, ["a"], "unknown");
    await hub.subscribe(opener, ["a"]);
    await hub.subscribe(opener, ["a"], "earliest");
    const newest = (await broker.locate("earliest")).head?.id;
    expect(seen).toEqual(["earliest", first?.id, newest, undefined, "earliest"]);
  });

  it("drops the stream as soon as it opens when its held events outgrew the bound before", async () => {
    const locateGate = gate();
    class SlowLocate extends MemoryBroker {
      override async locate(id: string) {
        await locateGate.promise;
        return super.locate(id);
      }
    }
    const broker = new SlowLocate({ historySize: 100 });
    const hub = await startHub(broker, { maxPendingBytes: 50 });
    const s = new FakeStream();
    const subscribing = hub.subscribe(() => s.asStream, ["a"], "earliest");
    await broker.publish({ topic: "a", data: "x".repeat(100) });
    locateGate.open();
    await subscribing;
    expect(s.droppedTooSlow).toBe("default");
  });

  it("rejects, having sent nothing and left no subscription, when the lookup fails before the response opens", async () => {
    class BrokenLocate extends MemoryBroker {
      override async locate(): Promise<never> {
        throw new Error("storage down");
      }
    }
    const hub = await startHub(new BrokenLocate({ historySize: 100 }));
    const opened: string[] = [];
    await expect(
      hub.subscribe(
        () => {
          opened.push("opened");
          return new FakeStream().asStream;
        },
        ["a"],
        "some-id",
      ),
    ).rejects.toThrow("storage down");
    expect(opened).toEqual([]);
    expect(hub.topicCounts()).toEqual({});
  });

  it("ends an already open stream when the lookup fails, so its client retries", async () => {
    class BrokenLocate extends MemoryBroker {
      override async locate(): Promise<never> {
        throw new Error("storage down");
      }
    }
    const hub = await startHub(new BrokenLocate({ historySize: 100 }));
    const s = new FakeStream();
    await hub.subscribe(s.asStream, ["a"], "some-id");
    expect(s.ended).toBe(true);
    expect(s.events).toEqual([]);
    expect(hub.topicCounts()).toEqual({});
  });

  it("leaves no subscription when the opener throws", async () => {
    const hub = await startHub(new MemoryBroker({ historySize: 100 }));
    await expect(
      hub.subscribe(
        () => {
          throw new Error("cannot open");
        },
        ["a"],
        "earliest",
      ),
    ).rejects.toThrow("cannot open");
    expect(hub.topicCounts()).toEqual({});
  });

  it("ends the stream when a history read fails mid-replay", async () => {
    class BrokenRead extends MemoryBroker {
      override async read(): Promise<never> {
        throw new Error("storage down");
      }
    }
    const broker = new BrokenRead({ historySize: 100 });
    const hub = await startHub(broker);
    await broker.publish({ topic: "a", data: "1" });
    const s = new FakeStream();
    await hub.subscribe(s.asStream, ["a"], "earliest");
    expect(s.ended).toBe(true);
    expect(s.events).toEqual([]);
  });
});

describe("Hub, batches", () => {
  it("publishes a batch as one unit, counts only new events, and names the item an error is about", async () => {
    const broker = new MemoryBroker({ historySize: 100 });
    const hub = await startHub(broker, { maxEventBytes: 200 });
    const results = await hub.publishBatch([
      { topic: "a", data: "1", id: "one" },
      { topic: "a", data: "1", id: "one" },
      { topic: "a", data: "2" },
    ]);
    expect(results.map((r) => r.duplicate)).toEqual([false, true, false]);
    expect(hub.counters.published).toBe(2);
    // Refused by the hub's own checks, before the broker sees anything.
    await expect(
      hub.publishBatch([
        { topic: "a", data: "3" },
        { topic: "a", data: "x".repeat(300) },
      ]),
    ).rejects.toMatchObject({ code: "HERALD_EVENT_TOO_LARGE", index: 1, message: expect.stringMatching(/^item 1: /) });
    await expect(hub.publishBatch([{ topic: "a", data: "3", id: "earliest" }])).rejects.toMatchObject({
      index: 0,
      message: expect.stringMatching(/^item 0: id "earliest" is reserved/),
    });
    // Refused by the broker: the item it names.
    await expect(
      hub.publishBatch([
        { topic: "a", data: "3" },
        { topic: "a", data: "other", id: "one" },
      ]),
    ).rejects.toMatchObject({
      code: "HERALD_ID_CONFLICT",
      index: 1,
      message: expect.stringMatching(/^item 1: An event/),
    });
    // A single publish's errors carry no item.
    await expect(hub.publish({ topic: "a", data: "other", id: "one" })).rejects.toMatchObject({
      message: expect.stringMatching(/^An event with id "one"/),
    });
    expect(hub.counters.published).toBe(2);
    expect((await broker.read("", 10)).map((e) => e.data)).toEqual(["1", "2"]);
  });

  it("passes on a broker failure that names no item as it is", async () => {
    // A real storage failure: a SQLite database that is closed.
    const broker = SqliteBroker.open({ path: ":memory:", historySize: 100 });
    const hub = new Hub({
      broker,
      replayLimit: 100,
      maxPendingBytes: 1 << 20,
      maxEventBytes: 1 << 20,
      log: silentLogger,
    });
    await broker.close();
    await expect(hub.publishBatch([{ topic: "a", data: "1" }])).rejects.toMatchObject({
      code: "HERALD_BROKER_UNAVAILABLE",
      message: expect.stringMatching(/^Herald cannot reach its storage/),
    });
  });
});
