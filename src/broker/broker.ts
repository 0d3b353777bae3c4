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

/** What `history` answers. */
export interface HistoryResult {
  /** Events after the given id on the requested topics, oldest first. */
  readonly events: StoredEvent[];
  /** False when the id is not in history: too old, from another run, or never issued. */
  readonly found: boolean;
  /** The position of the `afterId` event, when found. */
  readonly afterPos?: string;
  /** The newest event in the whole history when it was read, if there is any. */
  readonly head?: HistoryMark;
}

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
 *   `IdConflictError`.
 * - Callers validate input first (topic names, field characters); the broker does not.
 * - When its storage is unreachable, `publish` and `history` reject with `BrokerUnavailableError`
 *   (never a success for an event that was not stored), and `subscribe` listeners resume, without
 *   a gap, once it is back.
 */
export interface Broker {
  /** Appends to history, assigns the id unless one is given, and fans out to listeners. */
  publish(input: EventInput): Promise<PublishResult>;
  /** `onEvent` receives every event published after the returned promise resolves, in order. */
  subscribe(onEvent: (event: StoredEvent) => void): Promise<() => Promise<void>>;
  /** At most `limit` events after `afterId` on `topics`; `found: false` when `afterId` has left history. */
  history(topics: TopicSelection, afterId: string, limit: number): Promise<HistoryResult>;
  /** Whether the broker can take work right now. */
  status(): BrokerStatus;
  close(): Promise<void>;
}
