import { PublishOutcomeUnknownError } from "../errors.js";

/** What a publisher sends, after validation: `data` is already text. */
export interface EventInput {
  readonly topic: string;
  readonly data: string;
  readonly event?: string;
  /** A publisher-chosen id; when absent the broker assigns one. */
  readonly id?: string;
  readonly retry?: number;
  /** Only for subscribers whose token covers the topic; part of the content an idempotent re-publish compares. */
  readonly private?: boolean;
  /**
   * More topics the event belongs to (Mercure's alternate topics), besides `topic`. Engines store
   * and return them as given; matching them against subscriptions is the hub's work.
   */
  readonly alternates?: readonly string[];
}

/** An event as the broker keeps it: it always has an id, and the time it was accepted (ms since epoch). */
export interface StoredEvent extends EventInput {
  readonly id: string;
  readonly time: number;
  /**
   * Its place in history: positions compare with `<` as strings, in history order. Internal:
   * never sent to clients (ids are what clients see, and ids are opaque).
   */
  readonly pos: string;
}

/** Where an event sits in history, without its content. */
export interface HistoryMark {
  readonly id: string;
  readonly pos: string;
}

/** What `publish` answers: the stored event, and whether it was already there (an idempotent re-publish). */
export interface PublishResult {
  readonly event: StoredEvent;
  readonly duplicate: boolean;
}

/** What `locate` answers. */
export interface Location {
  /** False when the id is not in history: too old, from another run, or never issued. */
  readonly found: boolean;
  /** The id's position, when found (`BEFORE_FIRST_POS` for `EARLIEST_ID`). */
  readonly pos?: string;
  /** The newest event in the whole history when it was looked up, if there is any. */
  readonly head?: HistoryMark;
}

/**
 * A Last-Event-ID meaning "before the first event": resuming from it replays everything still
 * retained (Mercure gives `earliest` the same meaning). No event may carry this id.
 */
export const EARLIEST_ID = "earliest";

/** The position `locate(EARLIEST_ID)` answers: it compares below every event's position. */
export const BEFORE_FIRST_POS = "";

/** Whether the broker can take work now, for `/health`. */
export interface BrokerStatus {
  readonly ok: boolean;
  /** Why not, when `ok` is false. */
  readonly detail?: string;
}

/** `"*"` stands for every topic. */
export type TopicSelection = readonly string[] | "*";

/**
 * Where events are stored and fanned out. Every engine keeps this contract:
 * - Ids are opaque to clients. Every event has a position (`pos`): history order, delivery order
 *   and position order are the same, on every node.
 * - `publish` is atomic: history order equals delivery order to `subscribe` listeners, and an
 *   event is only acknowledged once it is in history.
 * - A publisher-supplied id is unique within history: re-publishing it with the same content
 *   returns the stored event with `duplicate: true`; with different content it throws
 *   `IdConflictError`. Every engine also remembers the last
 *   `retiredIdCapacity(historySize)` ids that left history and refuses them with `IdRetiredError`,
 *   so a Last-Event-ID never resolves to a later event than the one the client saw.
 * - Callers validate input first (topic names, field characters); the broker does not.
 * - When its storage is unreachable, `publish`, `locate` and `read` reject with `BrokerUnavailableError`
 *   (never a success for an event that was not stored), and `subscribe` listeners resume, without
 *   a gap, once it is back. A publish that reached the storage but got no answer (or not the
 *   replicas asked for) rejects with `PublishOutcomeUnknownError`, whose `publishId` is the id a
 *   retry must carry to be stored at most once.
 * - An engine whose live feed can miss events (a node that lagged behind trimming, a failover
 *   that lost what a node had read) detects it and calls `subscribe`'s `onGap`; it never skips
 *   events silently.
 */
export interface Broker {
  /** Appends to history, assigns the id unless one is given, and fans out to listeners. */
  publish(input: EventInput): Promise<PublishResult>;
  /**
   * Publishes `inputs` as one unit, in one round trip to the storage: all are stored or none (an
   * id conflict or a retired id in any item rejects the whole batch, the error's `index` naming
   * the item), adjacent in history (no other publish comes between them) and in their order, and
   * they reach listeners in the same turn of the event loop. Ids work per item as in `publish`:
   * an item that repeats a stored event (or an earlier item of the batch) is a duplicate. Answers
   * one result per input, in order.
   */
  publishBatch(inputs: readonly EventInput[]): Promise<PublishResult[]>;
  /**
   * `onEvent` receives every event published after the returned promise resolves, in order.
   * `onGap` is called when the engine finds that the live feed missed events: continuity is lost,
   * and the caller ends what relied on it (clients then resume from history, or get a `reset`).
   */
  subscribe(onEvent: (event: StoredEvent) => void, onGap?: () => void): Promise<() => Promise<void>>;
  /**
   * Where a Last-Event-ID sits: its position when it is in history (`found: false` when it has
   * left history, was never issued, or comes from another run); `EARLIEST_ID` is always found, at
   * `BEFORE_FIRST_POS`. Always reports the newest event (head), if there is any.
   */
  locate(id: string): Promise<Location>;
  /**
   * At most `limit` events whose position is greater than `afterPos`, on every topic, oldest
   * first: one bounded page, so a caller walks history by cursor and never holds more than a
   * page. Topic filtering is the caller's (the hub's) work.
   */
  read(afterPos: string, limit: number): Promise<StoredEvent[]>;
  /** Whether the broker can take work right now. */
  status(): BrokerStatus;
  close(): Promise<void>;
}

/** Marks `err` as caused by the batch item at `index` (see `Broker.publishBatch`). */
export function atItem<E extends Error>(err: E, index: number): E & { index: number } {
  return Object.assign(err, { index });
}

/** Engines remember at least this many ids that left history (see `retiredIdCapacity`). */
export const RETIRED_IDS_MIN = 10_000;

/**
 * How many ids that left history an engine remembers, to refuse them to a new event: a client
 * may still resume from such an id, and must get a `reset`, never a replay after a later event
 * that took the same id. `HISTORY_SIZE`, and at least `RETIRED_IDS_MIN`.
 */
export function retiredIdCapacity(historySize: number): number {
  return Math.max(historySize, RETIRED_IDS_MIN);
}

/**
 * `input` stored under `id` at `time` and `pos`. Every field named, in one order, for every engine:
 * one object shape, where a literal that starts with a spread (`{ ...input, id }`) costs
 * microseconds per event on Node 20.
 */
export function storedEvent(input: EventInput, id: string, time: number, pos: string): StoredEvent {
  return {
    topic: input.topic,
    alternates: input.alternates,
    data: input.data,
    event: input.event,
    id,
    retry: input.retry,
    private: input.private,
    time,
    pos,
  };
}

/**
 * The sequence number an id of the form `<prefix><sequence>` names (the form the memory and
 * SQLite engines assign), or undefined for any other id: a sequence has no leading zero and at
 * most 15 digits, so it is an exact integer.
 */
export function assignedSeq(prefix: string, id: string): number | undefined {
  if (!id.startsWith(prefix)) return undefined;
  const digits = id.slice(prefix.length);
  return /^[1-9]\d{0,14}$/.test(digits) ? Number(digits) : undefined;
}

/** The position of the event with sequence number `seq`, for engines that number events. */
export function seqPos(seq: number): string {
  return String(seq).padStart(16, "0");
}

/** The sequence number of a position made by `seqPos`; `BEFORE_FIRST_POS` is 0. */
export function posSeq(pos: string): number {
  return pos === BEFORE_FIRST_POS ? 0 : Number(pos);
}

/** True when two events carry the same content: what makes a re-publish with the same id harmless. */
export function sameContent(a: EventInput, b: EventInput): boolean {
  return (
    a.topic === b.topic &&
    a.data === b.data &&
    a.event === b.event &&
    a.retry === b.retry &&
    !a.private === !b.private &&
    sameList(a.alternates, b.alternates)
  );
}

/** Absent and empty lists are the same: no alternate topics. */
function sameList(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  const x = a ?? [];
  const y = b ?? [];
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/**
 * A publish that may or may not be stored, naming the ids its retry must carry to be stored once:
 * `publishId` for a single event, `publishIds` (in order) for a batch.
 */
export function unknownOutcome(
  reason: string,
  ids: readonly string[],
  batch: boolean,
  options?: { cause: unknown },
): Error {
  const id = JSON.stringify(ids[0]);
  // Not `options` when absent: the error's constructor would print it in the message.
  const error = options
    ? new PublishOutcomeUnknownError(reason, id, options)
    : new PublishOutcomeUnknownError(reason, id);
  if (!batch) return Object.assign(error, { publishId: ids[0] });
  error.message = `${reason}: the events may or may not have been stored. Retry the batch with the same ids (this answer's ids field, in order): each is then stored exactly once`;
  return Object.assign(error, { publishIds: ids });
}
