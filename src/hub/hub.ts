import type { FastifyBaseLogger } from "fastify";
import type { TopicGrant } from "../auth/topic-grant.js";
import {
  type Broker,
  EARLIEST_ID,
  type EventInput,
  type Location,
  type PublishResult,
  type StoredEvent,
  type TopicSelection,
} from "../broker/broker.js";
import { EventTooLargeError, InvalidEventError, itemError } from "../errors.js";
import { encodedSize, encodeEvent } from "../sse/encode.js";
import { encodeEnvelope } from "../sse/envelope.js";
import type { SseStream } from "../sse/sse-stream.js";
import { SelectorIndex, selects } from "./selector-index.js";
import { ALL_TOPICS, eventTopics } from "./topic.js";

/** Options for `Hub`. */
export interface HubOptions {
  broker: Broker;
  /** The most events one Last-Event-ID replay may send (a bound on the history scan). */
  replayLimit: number;
  /** The most bytes of live events a stream may hold back while it replays. */
  maxPendingBytes: number;
  /**
   * A replaying stream whose socket does not drain within this many ms is dropped (counted in
   * `closedTooSlow`): its client reconnects and resumes where it stopped. Default `REPLAY_DRAIN_TIMEOUT_MS`.
   */
  replayDrainTimeoutMs?: number;
  /** The most bytes one event may take on the wire; a larger publish is refused. */
  maxEventBytes: number;
  log: FastifyBaseLogger;
}

/** A replay hands this much to a stream, then waits for the socket to drain before the next batch. */
const REPLAY_BATCH_BYTES = 64 * 1024;
/** The most events one history page holds: a replay reads history page by page, never all at once. */
export const REPLAY_PAGE_EVENTS = 256;
/** Pages are sized from the events seen so far to hold about this many bytes of event data. */
export const REPLAY_PAGE_BYTES = 256 * 1024;
/** The first page is small: nothing is known yet about the size of events. */
const REPLAY_FIRST_PAGE_EVENTS = 16;
/** Default of `HubOptions.replayDrainTimeoutMs` (the `REPLAY_DRAIN_TIMEOUT_MS` setting's default). */
export const REPLAY_DRAIN_TIMEOUT_MS = 10_000;

/** Counters for `/stats`. */
export interface HubCounters {
  published: number;
  delivered: number;
  replays: number;
  resets: number;
  /** Replays ended because the client did not take a batch within the drain deadline. */
  replaysStalled: number;
  /** Times the broker's live feed missed events, and this node ended its streams so they resume. */
  feedGaps: number;
}

/**
 * Opens a subscription's response once its Last-Event-ID has been looked up, given the id the
 * stream resumes after (the id itself, the newest id after a reset, `earliest` for an empty
 * history; undefined without a Last-Event-ID): for protocols that send it as a header (Mercure).
 */
export type StreamOpener = (resumedAfter: string | undefined) => SseStream;

/** Whether an event belongs to a subscription's topics. */
export type TopicMatch = (event: StoredEvent) => boolean;

/**
 * The one place a replay decides which of history's events a subscription wants (engines hand
 * back every topic). Live fan-out finds subscribers through the hub's topic index instead.
 */
export function topicMatch(topics: TopicSelection): TopicMatch {
  if (topics === ALL_TOPICS) return () => true;
  return (event) => selects(topics, eventTopics(event));
}

/** How many events the next history page may hold: about `REPLAY_PAGE_BYTES` of events like the last page's. */
function nextPageLimit(page: readonly StoredEvent[]): number {
  let bytes = 0;
  // Field names, id and framing: a rough constant is enough to size a page.
  for (const event of page) bytes += event.data.length + event.id.length + 64;
  const perEvent = bytes / Math.max(1, page.length);
  return Math.max(1, Math.min(REPLAY_PAGE_EVENTS, Math.floor(REPLAY_PAGE_BYTES / perEvent)));
}

/** Whether a subscription may receive a private event with these topics (canonical and alternates). */
type PrivateAccess = (topics: readonly string[]) => boolean;
const NO_PRIVATE: PrivateAccess = () => false;
const EVERY_PRIVATE: PrivateAccess = () => true;

/**
 * Decided once per subscription. As in Mercure, a private event reaches a subscriber whose
 * selectors match one of its topics when its token's `mercure.subscribe` covers any of its topics
 * (not necessarily the same one). Public events never ask.
 */
function privateAccess(grant: TopicGrant | undefined): PrivateAccess {
  if (grant === undefined) return NO_PRIVATE;
  if (grant.all) return EVERY_PRIVATE;
  return (topics) => grant.coversAny(topics);
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
  /** For `SelectorIndex`: the last event match that reached this subscription. */
  visited = 0;
  /** Its pending events outgrew the bound before its stream was open: drop the stream once it is. */
  overflowed = false;
  constructor(
    /** Undefined until the response opens (a `StreamOpener` runs after the Last-Event-ID lookup). */
    public stream: SseStream | undefined,
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
      if (this.#pendingBytes > this.maxPendingBytes) {
        if (this.stream === undefined) this.overflowed = true;
        else this.stream.dropTooSlow(this.#pendingBytes);
      }
      return;
    }
    if (this.seenUpTo !== undefined) {
      if (event.pos <= this.seenUpTo) return;
      // Positions only grow on the live feed: once past the replay, no later event can be behind it.
      this.seenUpTo = undefined;
    }
    this.stream?.send(bytes);
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
  readonly #drainTimeoutMs: number;
  readonly #maxEventBytes: number;
  readonly #log: FastifyBaseLogger;
  readonly #index = new SelectorIndex<Subscription>();
  #unsubscribe: (() => Promise<void>) | undefined;
  readonly counters: HubCounters = {
    published: 0,
    delivered: 0,
    replays: 0,
    resets: 0,
    replaysStalled: 0,
    feedGaps: 0,
  };

  constructor(options: HubOptions) {
    this.#broker = options.broker;
    this.#replayLimit = options.replayLimit;
    this.#maxPendingBytes = options.maxPendingBytes;
    this.#drainTimeoutMs = options.replayDrainTimeoutMs ?? REPLAY_DRAIN_TIMEOUT_MS;
    this.#maxEventBytes = options.maxEventBytes;
    this.#log = options.log;
  }

  /** Starts receiving the broker's events. */
  async start(): Promise<void> {
    this.#unsubscribe = await this.#broker.subscribe(
      (event) => this.#dispatch(event),
      () => this.#endAll(),
    );
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
    this.#check(input);
    const result = await this.#broker.publish(input);
    if (!result.duplicate) this.counters.published++;
    return result;
  }

  /**
   * Publishes `inputs` as one unit (`Broker.publishBatch`): each is checked as `publish` checks
   * one, and any refusal refuses them all, its message starting `item <index>:`.
   */
  async publishBatch(inputs: readonly EventInput[]): Promise<PublishResult[]> {
    for (const [index, input] of inputs.entries()) {
      try {
        this.#check(input);
      } catch (err) {
        throw itemError(err as Error, index);
      }
    }
    let results: PublishResult[];
    try {
      results = await this.#broker.publishBatch(inputs);
    } catch (err) {
      const index = (err as { index?: unknown }).index;
      throw typeof index === "number" ? itemError(err as Error, index) : err;
    }
    for (const result of results) if (!result.duplicate) this.counters.published++;
    return results;
  }

  /** What every publish must pass before the broker sees it. */
  #check(input: EventInput): void {
    if (input.id === EARLIEST_ID) {
      throw new InvalidEventError(
        `id "${EARLIEST_ID}" is reserved: as a Last-Event-ID it means "replay everything retained". Choose another id`,
      );
    }
    const size = encodedSize(input);
    if (size > this.#maxEventBytes) throw new EventTooLargeError(size, this.#maxEventBytes);
  }

  /** Subscriber count per selector (`*` for streams on every topic); selectors without subscribers are absent. */
  topicCounts(): Record<string, number> {
    return this.#index.counts();
  }

  /**
   * Attaches `stream` to `topics` until it closes. With `lastEventId`, first sends every retained
   * event after it (or a `reset` event when that id has left history), then the live feed: no gap
   * and no duplicate, because the subscription exists before history is read and live events at
   * or before the replay's last position are dropped. `EARLIEST_ID` replays everything retained.
   * History is read in pages of at most `REPLAY_PAGE_EVENTS` (fewer when events are large) and
   * goes out in batches, each after the socket has drained, so a client that does not read holds
   * at most a page and a batch, and is dropped when a batch does not drain within the deadline.
   * Private events, live or replayed, reach the stream only on the topics `grant` (its token's
   * `mercure.subscribe`) covers. With `envelope`, events go out as `encodeEnvelope` makes them
   * (the `reset` event stays as it is). `target` is the open stream, or a `StreamOpener` called
   * once the Last-Event-ID is looked up (the subscription already receives live events, held
   * until the replay is done); if that lookup fails, the promise rejects and nothing was sent.
   */
  async subscribe(
    target: SseStream | StreamOpener,
    topics: TopicSelection,
    lastEventId?: string,
    grant?: TopicGrant,
    envelope = false,
  ): Promise<void> {
    const opener = typeof target === "function" ? target : undefined;
    const sub = new Subscription(
      opener ? undefined : (target as SseStream),
      this.#maxPendingBytes,
      privateAccess(grant),
      envelope,
    );
    if (lastEventId !== undefined) sub.pending = [];
    this.#index.add(sub, topics);
    const open = (resumedAfter: string | undefined): SseStream => {
      let stream = sub.stream;
      if (stream === undefined) {
        try {
          stream = (opener as StreamOpener)(resumedAfter);
        } catch (err) {
          this.#index.remove(sub, topics);
          throw err;
        }
        sub.stream = stream;
      }
      stream.onClose(() => this.#index.remove(sub, topics));
      if (sub.overflowed) stream.dropTooSlow();
      return stream;
    };
    if (lastEventId === undefined) {
      open(undefined);
      return;
    }

    let location: Location;
    try {
      location = await this.#broker.locate(lastEventId);
    } catch (err) {
      if (sub.stream === undefined) {
        // Nothing sent yet: the client gets the error (503) instead of an empty stream.
        this.#index.remove(sub, topics);
        throw err;
      }
      open(undefined);
      this.#endAfterFailedRead(sub.stream, err);
      return;
    }
    const found = location.found && location.pos !== undefined;
    // Mercure: the id of the event before the first one sent, `earliest` when there is none.
    const stream = open(found ? lastEventId : (location.head?.id ?? EARLIEST_ID));
    if (stream.closed) return;
    if (!found) {
      this.counters.resets++;
      stream.send(encodeEvent(resetEvent(lastEventId, location.head?.id)));
      sub.goLive(location.head?.pos);
      return;
    }
    this.counters.replays++;
    const seenUpTo = await this.#replay(
      sub,
      topicMatch(topics),
      { id: lastEventId, pos: location.pos as string },
      location.head,
    );
    // Nothing is awaited from here on, so no live event can slip between the replay and the live feed.
    if (seenUpTo !== undefined) sub.goLive(seenUpTo);
  }

  /**
   * Sends the events after `from` up to `head` (later ones are in `sub.pending`), page by page.
   * Returns the last position covered, or undefined when the stream has ended.
   */
  async #replay(
    sub: Subscription,
    matches: TopicMatch,
    from: { id: string; pos: string },
    head: { pos: string } | undefined,
  ): Promise<string | undefined> {
    const stream = sub.stream as SseStream;
    let cursor = from;
    let sent = 0;
    let batchBytes = 0;
    let limit = REPLAY_FIRST_PAGE_EVENTS;
    while (head !== undefined && cursor.pos < head.pos && sent < this.#replayLimit) {
      let page: StoredEvent[];
      try {
        page = await this.#broker.read(cursor.pos, limit);
        // History is trimmed from its oldest end only: if the cursor's event is still there after
        // the read, nothing after it was trimmed before the page was taken. Otherwise events may
        // be missing: end the stream, and its client's resume gets a `reset`.
        if (cursor.id !== EARLIEST_ID && !(await this.#broker.locate(cursor.id)).found) {
          this.#log.info("history was trimmed past a replay in progress; ending the stream so the client resumes");
          stream.end();
          return undefined;
        }
      } catch (err) {
        this.#endAfterFailedRead(stream, err);
        return undefined;
      }
      if (stream.closed) return undefined;
      if (page.length === 0) break;
      for (const event of page) {
        cursor = event;
        if (!matches(event) || (event.private && !sub.mayReceivePrivate(eventTopics(event)))) continue;
        const bytes = sub.envelope ? encodeEnvelope(event, true) : encodeEvent(event);
        stream.send(bytes);
        this.counters.delivered++;
        batchBytes += bytes.length;
        if (++sent >= this.#replayLimit) break;
        if (batchBytes >= REPLAY_BATCH_BYTES) {
          batchBytes = 0;
          if (!(await this.#drained(stream))) return undefined;
        }
      }
      limit = nextPageLimit(page);
    }
    return cursor.pos;
  }

  /** Waits for `stream` to drain; drops it when it does not within the deadline. False when it has closed. */
  async #drained(stream: SseStream): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<"late">((resolve) => {
      timer = setTimeout(() => resolve("late"), this.#drainTimeoutMs);
    });
    const outcome = await Promise.race([stream.drain(), late]);
    clearTimeout(timer);
    if (outcome !== "late") return outcome;
    this.counters.replaysStalled++;
    // Holding the page any longer would let idle clients pin server memory; it resumes by id.
    stream.dropTooSlow();
    return false;
  }

  #endAfterFailedRead(stream: SseStream, err: unknown): void {
    // Headers are sent: no error body. Ending the stream makes the client retry with the same id.
    this.#log.error({ err }, "history lookup failed; ending the stream so the client retries");
    stream.end();
  }

  /**
   * The live feed missed events: no local stream can be trusted to be complete. Ending them makes
   * each client reconnect with its Last-Event-ID, and get the missed events from history, or a
   * `reset` when they have left it.
   */
  #endAll(): void {
    this.counters.feedGaps++;
    const subs = this.#index.all();
    this.#log.warn({ streams: subs.size }, "ending every local stream after a gap in the live feed");
    for (const sub of subs) sub.stream?.end();
  }

  #dispatch(event: StoredEvent): void {
    if (this.#index.empty) return;
    const topics = eventTopics(event);
    const bytes = new EventBytes(event);
    let delivered = 0;
    this.#index.forEachMatch(topics, (sub) => {
      if (event.private && !sub.mayReceivePrivate(topics)) return;
      sub.deliver(event, bytes.for(sub));
      delivered++;
    });
    this.counters.delivered += delivered;
  }
}

/**
 * The event sent instead of a replay when the client's id is unknown. It carries the newest id so
 * the client's next reconnect resumes from now instead of hitting the same reset again; on an
 * empty history, `EARLIEST_ID` (an empty id would clear the client's Last-Event-ID, by the
 * EventSource rules, and its next reconnect would not resume at all).
 */
function resetEvent(lastEventId: string, head: string | undefined) {
  return {
    id: head ?? EARLIEST_ID,
    event: "reset",
    data: JSON.stringify({
      reason: "last-event-id-not-in-history",
      lastEventId: lastEventId.slice(0, 256),
      message:
        "The Last-Event-ID is no longer in history (too old, or from before a restart): events may have been missed. The stream continues live.",
    }),
  };
}
