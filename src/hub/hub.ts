import type { FastifyBaseLogger } from "fastify";
import type { TopicGrant } from "../auth/topic-grant.js";
import type { Broker, EventInput, PublishResult, StoredEvent, TopicSelection } from "../broker/broker.js";
import { EventTooLargeError } from "../errors.js";
import { encodedSize, encodeEvent } from "../sse/encode.js";
import { encodeEnvelope } from "../sse/envelope.js";
import type { SseStream } from "../sse/sse-stream.js";
import { ALL_TOPICS } from "./topic.js";

/** Options for `Hub`. */
export interface HubOptions {
  broker: Broker;
  /** The most events one Last-Event-ID replay may send (a bound on the history scan). */
  replayLimit: number;
  /** The most bytes of live events a stream may hold back while it replays. */
  maxPendingBytes: number;
  /** The most bytes one event may take on the wire; a larger publish is refused. */
  maxEventBytes: number;
  log: FastifyBaseLogger;
}

/** A replay hands this much to a stream, then waits for the socket to drain before the next batch. */
const REPLAY_BATCH_BYTES = 64 * 1024;

/** Counters for `/stats`. */
export interface HubCounters {
  published: number;
  delivered: number;
  replays: number;
  resets: number;
}

/** Whether a subscription may receive the private events of a topic. */
type PrivateAccess = (topic: string) => boolean;
const NO_PRIVATE: PrivateAccess = () => false;
const EVERY_PRIVATE: PrivateAccess = () => true;

/**
 * Decided once per subscription, so a private event costs each subscriber a set lookup, or for a
 * `*` stream with a partial grant one `covers` call. Public events never ask.
 */
function privateAccess(topics: TopicSelection, grant: TopicGrant | undefined): PrivateAccess {
  if (grant === undefined) return NO_PRIVATE;
  if (grant.all) return EVERY_PRIVATE;
  if (topics === ALL_TOPICS) return (topic) => grant.covers(topic);
  const allowed = new Set(topics.filter((topic) => grant.covers(topic)));
  return allowed.size === 0 ? NO_PRIVATE : (topic) => allowed.has(topic);
}

/**
 * A local stream's interest in some topics. While it replays, live events wait in `pending`;
 * after that, live events at or before `seenUpTo` (the last position the replay covered) are
 * dropped: on an engine whose live feed lags its history (Redis), they arrive after the replay.
 */
class Subscription {
  pending: { event: StoredEvent; bytes: Buffer }[] | undefined;
  seenUpTo: string | undefined;
  #pendingBytes = 0;
  constructor(
    readonly stream: SseStream,
    readonly maxPendingBytes: number,
    readonly mayReceivePrivate: PrivateAccess,
    /** Wants each event in an envelope (`encodeEnvelope`) rather than plain. */
    readonly envelope: boolean,
  ) {}

  deliver(event: StoredEvent, bytes: Buffer): void {
    if (this.pending !== undefined) {
      this.pending.push({ event, bytes });
      this.#pendingBytes += bytes.length;
      // A client too slow to take its replay must not make the server hold the live feed for it.
      if (this.#pendingBytes > this.maxPendingBytes) this.stream.dropTooSlow(this.#pendingBytes);
      return;
    }
    if (this.seenUpTo !== undefined) {
      if (event.pos <= this.seenUpTo) return;
      // Positions only grow on the live feed: once past the replay, no later event can be behind it.
      this.seenUpTo = undefined;
    }
    this.stream.send(bytes);
  }

  /** Ends the replay: sends the live events that came after `seenUpTo`, then goes live. */
  goLive(seenUpTo: string | undefined): void {
    const pending = this.pending ?? [];
    this.pending = undefined;
    this.seenUpTo = seenUpTo;
    for (const { event, bytes } of pending) this.deliver(event, bytes);
  }
}

/** One event's bytes in each wire format, each encoded at most once, when a subscriber first needs it. */
class EventBytes {
  #plain: Buffer | undefined;
  #enveloped: Buffer | undefined;
  constructor(readonly event: StoredEvent) {}

  for(sub: Subscription): Buffer {
    if (sub.envelope) {
      this.#enveloped ??= encodeEnvelope(this.event, false);
      return this.#enveloped;
    }
    this.#plain ??= encodeEvent(this.event);
    return this.#plain;
  }
}

/**
 * Topic → local subscribers of this process. Receives every event from the broker once, encodes
 * it once (once per wire format in use), and writes the same bytes to each subscriber of its
 * topic and of `*`.
 */
export class Hub {
  readonly #broker: Broker;
  readonly #replayLimit: number;
  readonly #maxPendingBytes: number;
  readonly #maxEventBytes: number;
  readonly #log: FastifyBaseLogger;
  readonly #byTopic = new Map<string, Set<Subscription>>();
  readonly #everyTopic = new Set<Subscription>();
  #unsubscribe: (() => Promise<void>) | undefined;
  readonly counters: HubCounters = { published: 0, delivered: 0, replays: 0, resets: 0 };

  constructor(options: HubOptions) {
    this.#broker = options.broker;
    this.#replayLimit = options.replayLimit;
    this.#maxPendingBytes = options.maxPendingBytes;
    this.#maxEventBytes = options.maxEventBytes;
    this.#log = options.log;
  }

  /** Starts receiving the broker's events. */
  async start(): Promise<void> {
    this.#unsubscribe = await this.#broker.subscribe((event) => this.#dispatch(event));
  }

  /** Stops receiving events. Open streams are not touched. */
  async stop(): Promise<void> {
    await this.#unsubscribe?.();
    this.#unsubscribe = undefined;
  }

  /**
   * Publishes through the broker; fan-out comes back through `start`'s subscription. Refuses an
   * event over `maxEventBytes` on the wire (`EventTooLargeError`) before anything is stored.
   */
  async publish(input: EventInput): Promise<PublishResult> {
    const size = encodedSize(input);
    if (size > this.#maxEventBytes) throw new EventTooLargeError(size, this.#maxEventBytes);
    const result = await this.#broker.publish(input);
    if (!result.duplicate) this.counters.published++;
    return result;
  }

  /** Subscriber count per topic (`*` for streams on every topic); topics without subscribers are absent. */
  topicCounts(): Record<string, number> {
    // fromEntries defines own properties, so a topic named __proto__ is counted like any other.
    const counts = Object.fromEntries([...this.#byTopic].map(([topic, subs]) => [topic, subs.size]));
    if (this.#everyTopic.size > 0) counts[ALL_TOPICS] = this.#everyTopic.size;
    return counts;
  }

  /**
   * Attaches `stream` to `topics` until it closes. With `lastEventId`, first sends every retained
   * event after it (or a `reset` event when that id has left history), then the live feed: no gap
   * and no duplicate, because the subscription exists before history is read and live events at
   * or before the replay's last position are dropped. The replay goes out in batches, each after
   * the socket has drained, so a client that does not read holds at most one batch. Private events,
   * live or replayed, reach the stream only on the topics `grant` (its token's `mercure.subscribe`) covers.
   * With `envelope`, events go out as `encodeEnvelope` makes them (the `reset` event stays as it is).
   */
  async subscribe(
    stream: SseStream,
    topics: TopicSelection,
    lastEventId?: string,
    grant?: TopicGrant,
    envelope = false,
  ): Promise<void> {
    const sub = new Subscription(stream, this.#maxPendingBytes, privateAccess(topics, grant), envelope);
    if (lastEventId !== undefined) sub.pending = [];
    this.#attach(sub, topics);
    stream.onClose(() => this.#detach(sub, topics));
    if (lastEventId === undefined) return;

    let history: Awaited<ReturnType<Broker["history"]>>;
    try {
      history = await this.#broker.history(topics, lastEventId, this.#replayLimit);
    } catch (err) {
      // Headers are sent: no error body. Ending the stream makes the client retry with the same id.
      this.#log.error({ err }, "history lookup failed; ending the stream so the client retries");
      stream.end();
      return;
    }
    if (stream.closed) return;
    if (!history.found) {
      this.counters.resets++;
      stream.send(encodeEvent(resetEvent(lastEventId, history.head?.id)));
      sub.goLive(history.head?.pos);
      return;
    }
    this.counters.replays++;
    let batchBytes = 0;
    for (const event of history.events) {
      if (event.private && !sub.mayReceivePrivate(event.topic)) continue;
      const bytes = envelope ? encodeEnvelope(event, true) : encodeEvent(event);
      stream.send(bytes);
      this.counters.delivered++;
      batchBytes += bytes.length;
      if (batchBytes >= REPLAY_BATCH_BYTES) {
        batchBytes = 0;
        if (!(await stream.drain())) return;
      }
    }
    // Nothing is awaited from here on, so no live event can slip between the replay and the live feed.
    sub.goLive(history.events.at(-1)?.pos ?? history.afterPos);
  }

  #dispatch(event: StoredEvent): void {
    const subs = this.#byTopic.get(event.topic);
    const n = (subs?.size ?? 0) + this.#everyTopic.size;
    if (n === 0) return;
    const bytes = new EventBytes(event);
    if (event.private) {
      this.#dispatchPrivate(event, bytes, subs);
      return;
    }
    if (subs !== undefined) for (const sub of subs) sub.deliver(event, bytes.for(sub));
    for (const sub of this.#everyTopic) sub.deliver(event, bytes.for(sub));
    this.counters.delivered += n;
  }

  #dispatchPrivate(event: StoredEvent, bytes: EventBytes, subs: Set<Subscription> | undefined): void {
    for (const group of [subs ?? [], this.#everyTopic]) {
      for (const sub of group) {
        if (!sub.mayReceivePrivate(event.topic)) continue;
        sub.deliver(event, bytes.for(sub));
        this.counters.delivered++;
      }
    }
  }

  #attach(sub: Subscription, topics: TopicSelection): void {
    if (topics === ALL_TOPICS) {
      this.#everyTopic.add(sub);
      return;
    }
    for (const topic of topics) {
      let subs = this.#byTopic.get(topic);
      if (subs === undefined) {
        subs = new Set();
        this.#byTopic.set(topic, subs);
      }
      subs.add(sub);
    }
  }

  #detach(sub: Subscription, topics: TopicSelection): void {
    if (topics === ALL_TOPICS) {
      this.#everyTopic.delete(sub);
      return;
    }
    for (const topic of topics) {
      const subs = this.#byTopic.get(topic);
      if (subs?.delete(sub) && subs.size === 0) this.#byTopic.delete(topic);
    }
  }
}

/**
 * The event sent instead of a replay when the client's id is unknown. It carries the newest id so
 * the client's next reconnect resumes from now instead of hitting the same reset again.
 */
function resetEvent(lastEventId: string, head: string | undefined) {
  return {
    id: head ?? "",
    event: "reset",
    data: JSON.stringify({
      reason: "last-event-id-not-in-history",
      lastEventId: lastEventId.slice(0, 256),
      message:
        "The Last-Event-ID is no longer in history (too old, or from before a restart): events may have been missed. The stream continues live.",
    }),
  };
}
