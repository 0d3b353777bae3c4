import type { FastifyBaseLogger } from "fastify";
import { type Broker, EARLIEST_ID, type EventInput } from "../broker/broker.js";
import type { Config } from "../config.js";

/**
 * Mercure's active subscriptions ("presence"): who is subscribed to which topic selector, the
 * updates announcing each subscription and its end, and the facts of their format as the Mercure
 * hub v0.24.2 produces them (`subscription.go`, `subscriber.go`).
 */

/** The JSON-LD context of every subscription document. */
export const SUBSCRIPTION_CONTEXT = "https://mercure.rocks/";
/** The path under which subscriptions are listed, and the prefix of their topics. */
export const SUBSCRIPTIONS_PATH = "/.well-known/mercure/subscriptions";

/** One subscription (one topic selector of one subscriber), as Mercure's JSON-LD shows it. */
export interface SubscriptionDocument {
  /** Present on a document that stands alone (an update, a single-subscription answer); absent inside a collection. */
  readonly "@context"?: string;
  /** `/.well-known/mercure/subscriptions/{topic}/{subscriber}`, each part escaped by `queryEscape`. */
  readonly id: string;
  readonly type: "Subscription";
  readonly subscriber: string;
  /** The topic selector, as the subscriber gave it. */
  readonly topic: string;
  readonly active: boolean;
  /** Only on the single-subscription answer: the hub's last event id when it was read. */
  readonly lastEventID?: string;
  /** The subscriber token's `mercure.payload`; absent when the token had none (or `null`). */
  readonly payload?: unknown;
}

/** What a subscriber brings when it connects. */
export interface PresenceJoin {
  /** The subscriber's id, unique across the cluster (the hub makes `urn:uuid:…` ids). */
  readonly subscriber: string;
  /** Its topic selectors; repeats count once (a subscription is one selector of one subscriber). */
  readonly topics: readonly string[];
  /** Its token's `mercure.payload`, if any. */
  readonly payload?: unknown;
}

/** A subscriber as the registry keeps it. */
export interface PresenceEntry {
  readonly subscriber: string;
  readonly topics: readonly string[];
  readonly payload?: unknown;
}

/** Narrows `list`: `topic` keeps subscriptions whose selector is exactly this string (as v0.24.2 does). */
export interface PresenceFilter {
  readonly topic?: string;
  readonly subscriber?: string;
}

/**
 * The registry of active subscriptions. `join` registers a subscriber (visible to `list` at once
 * on this node) and announces one private update per selector with `active: true`; the function it
 * returns ends it and announces `active: false`. Each update is published only after the list
 * shows the change, so a client that reads the list, then subscribes from the list's `lastEventID`,
 * misses no change.
 */
export interface Presence {
  join(subscription: PresenceJoin): () => void;
  /** Active subscriptions (on every node, for a cluster-wide registry), in no particular order. */
  list(filter?: PresenceFilter): Promise<SubscriptionDocument[]>;
  /** Ends every subscription still registered (announcing it), waits for pending updates, then stops. */
  close(): Promise<void>;
}

/** Callbacks a `PresenceStore` uses to reach its registry. */
export interface PresenceStoreHooks {
  /** Subscribers of nodes found dead: the store claimed them, so this node alone announces their end. */
  reaped(entries: readonly PresenceEntry[]): void;
  /** This node's subscribers now, for a full rewrite after a failed write. */
  snapshot(): PresenceEntry[];
  /** Other nodes had declared this node dead (and announced its subscribers' end); it is back. */
  rejoined(): void;
}

/**
 * Where a cluster-wide registry shares this node's subscribers and finds the other nodes'.
 * `write` calls for one subscriber are applied in call order.
 */
export interface PresenceStore {
  start(hooks: PresenceStoreHooks): Promise<void>;
  /** Records this node's subscriber (`entry`) or removes it (`undefined`); resolves once other nodes can see the change (or the write failed and was logged). */
  write(subscriber: string, entry: PresenceEntry | undefined): Promise<void>;
  /** The subscribers of the other live nodes; only `subscriber` when given. */
  others(subscriber?: string): Promise<PresenceEntry[]>;
  close(): Promise<void>;
}

/** Options for `PresenceRegistry`. */
export interface PresenceRegistryOptions {
  /** Publishes an update, as the hub does for publishers: stored in history, then delivered. */
  publish: (input: EventInput) => Promise<unknown>;
  log: FastifyBaseLogger;
  /** Shares the registry across a cluster; without it the registry is this process's only. */
  store?: PresenceStore;
}

/** Reaped subscribers are announced this many updates at a time, so a dead node's thousands do not flood the broker at once. */
const REAPED_CONCURRENCY = 64;

/** What `encodeURIComponent` leaves alone but Go's `url.QueryEscape` escapes. */
const NOT_IN_GO = /[!'()*]/g;
/** Under the `u` flag a well-formed surrogate pair is one code point and does not match. */
const LONE_SURROGATE = /\p{Cs}/gu;

/**
 * Escapes text the way Go's `url.QueryEscape` does, which v0.24.2 uses for both parts of a
 * subscription id: UTF-8 bytes outside `A-Z a-z 0-9 - _ . ~` become `%XX` (upper-case hex) and a
 * space becomes `+`. (A lone UTF-16 surrogate, which has no UTF-8 form, is escaped as U+FFFD.)
 */
export function queryEscape(text: string): string {
  let escaped: string;
  try {
    escaped = encodeURIComponent(text);
  } catch {
    escaped = encodeURIComponent(text.replace(LONE_SURROGATE, "\uFFFD"));
  }
  return escaped.replace(NOT_IN_GO, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`).replaceAll("%20", "+");
}

/**
 * The inverse of `queryEscape` (Go's `url.QueryUnescape`): `+` is a space, `%XX` a byte. Throws a
 * `URIError` for a malformed escape; Fastify's router refuses such URLs (400) before any handler.
 */
export function queryUnescape(text: string): string {
  return decodeURIComponent(text.replaceAll("+", " "));
}

/** A subscription's id, which is also the topic of its updates. */
export function subscriptionId(topic: string, subscriber: string): string {
  return `${SUBSCRIPTIONS_PATH}/${queryEscape(topic)}/${queryEscape(subscriber)}`;
}

/** A subscription document for one selector of `entry`. */
export function subscriptionDocument(
  entry: PresenceEntry,
  topic: string,
  active: boolean,
  context?: string,
): SubscriptionDocument {
  return {
    ...(context !== undefined && { "@context": context }),
    id: subscriptionId(topic, entry.subscriber),
    type: "Subscription",
    subscriber: entry.subscriber,
    topic,
    active,
    ...(entry.payload !== undefined && entry.payload !== null && { payload: entry.payload }),
  };
}

/** Go decodes a token's payload into maps and writes maps with their keys sorted: so does Herald. */
function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (typeof value !== "object" || value === null) return value;
  // No prototype: a "__proto__" key in a payload stays a key.
  const sorted: Record<string, unknown> = Object.create(null);
  for (const key of Object.keys(value).sort()) sorted[key] = sortKeys((value as Record<string, unknown>)[key]);
  return sorted;
}

const GO_ESCAPES: Record<string, string> = {
  "<": "\\u003c",
  ">": "\\u003e",
  "&": "\\u0026",
  "\u2028": "\\u2028",
  "\u2029": "\\u2029",
};

/**
 * JSON as v0.24.2 writes these documents (Go's `json.MarshalIndent` with two spaces), with `<`,
 * `>`, `&`, U+2028 and U+2029 escaped as Go does. Those characters only occur inside JSON strings,
 * so replacing them is safe.
 */
export function goJson(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(/[<>&\u2028\u2029]/g, (c) => GO_ESCAPES[c] as string);
}

/** The update announcing that one subscription started (`active: true`) or ended. */
export function subscriptionUpdate(entry: PresenceEntry, topic: string, active: boolean): EventInput {
  const document = subscriptionDocument(entry, topic, active, SUBSCRIPTION_CONTEXT);
  return { topic: document.id, data: goJson(document), private: true };
}

interface LocalEntry extends PresenceEntry {
  /** Settles once this entry's latest announcement is published: its end is announced after it. */
  announced: Promise<void>;
}

/**
 * The registry of active subscriptions (`Presence`). Alone it is this process's (memory and
 * SQLite brokers); with a `store` (`RedisPresenceStore`) every node lists every node's subscribers
 * and a dead node's subscribers are ended by a surviving one. Updates go through `publish`, so
 * they are stored and replayable like any update; a failed publish is logged, not retried.
 */
export class PresenceRegistry implements Presence {
  readonly #publish: (input: EventInput) => Promise<unknown>;
  readonly #log: FastifyBaseLogger;
  readonly #store: PresenceStore | undefined;
  readonly #entries = new Map<string, LocalEntry>();
  readonly #inFlight = new Set<Promise<void>>();
  #closed = false;

  constructor(options: PresenceRegistryOptions) {
    this.#publish = options.publish;
    this.#log = options.log;
    this.#store = options.store;
  }

  /** Starts the store's heartbeats; a registry without a store needs no start. */
  async start(): Promise<void> {
    await this.#store?.start({
      reaped: (entries) => this.#track(this.#announceReaped(entries)),
      snapshot: () =>
        [...this.#entries.values()].map(({ subscriber, topics, payload }) => ({ subscriber, topics, payload })),
      rejoined: () => {
        for (const entry of this.#entries.values()) {
          entry.announced = this.#track(entry.announced.then(() => this.#announce(entry, true)));
        }
      },
    });
  }

  /** Subscribers registered on this node. */
  get size(): number {
    return this.#entries.size;
  }

  join(subscription: PresenceJoin): () => void {
    if (this.#closed) return () => {};
    const entry: LocalEntry = {
      subscriber: subscription.subscriber,
      topics: [...new Set(subscription.topics)],
      ...(subscription.payload !== undefined && { payload: sortKeys(subscription.payload) }),
      announced: Promise.resolve(),
    };
    this.#entries.set(entry.subscriber, entry);
    const written = this.#store?.write(entry.subscriber, entry);
    entry.announced = this.#track(
      written === undefined ? this.#announce(entry, true) : written.then(() => this.#announce(entry, true)),
    );
    let left = false;
    return () => {
      if (left) return;
      left = true;
      this.#leave(entry);
    };
  }

  async list(filter: PresenceFilter = {}): Promise<SubscriptionDocument[]> {
    const { topic, subscriber } = filter;
    const local = subscriber === undefined ? [...this.#entries.values()] : [this.#entries.get(subscriber)];
    const entries: (PresenceEntry | undefined)[] = [...local];
    if (this.#store !== undefined) entries.push(...(await this.#store.others(subscriber)));
    const documents: SubscriptionDocument[] = [];
    for (const entry of entries) {
      if (entry === undefined || (subscriber !== undefined && entry.subscriber !== subscriber)) continue;
      for (const selector of entry.topics) {
        if (topic === undefined || selector === topic) documents.push(subscriptionDocument(entry, selector, true));
      }
    }
    return documents;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const entry of [...this.#entries.values()]) this.#leave(entry);
    while (this.#inFlight.size > 0) await Promise.all(this.#inFlight);
    await this.#store?.close();
  }

  #leave(entry: LocalEntry): void {
    // A later join with the same subscriber id owns the slot (and the store's field) now.
    if (this.#entries.get(entry.subscriber) !== entry) return;
    this.#entries.delete(entry.subscriber);
    const removed = this.#store?.write(entry.subscriber, undefined);
    const before = removed === undefined ? entry.announced : Promise.all([entry.announced, removed]);
    entry.announced = this.#track(before.then(() => this.#announce(entry, false)));
  }

  async #announce(entry: PresenceEntry, active: boolean): Promise<void> {
    await Promise.all(
      entry.topics.map(async (topic) => {
        try {
          await this.#publish(subscriptionUpdate(entry, topic, active));
        } catch (err) {
          this.#log.warn(
            { err, subscriber: entry.subscriber, topic, active },
            "could not publish a subscription update (SUBSCRIPTIONS)",
          );
        }
      }),
    );
  }

  async #announceReaped(entries: readonly PresenceEntry[]): Promise<void> {
    this.#log.info(
      { subscribers: entries.length },
      "ending the subscriptions of a Herald node that stopped responding",
    );
    for (let i = 0; i < entries.length; i += REAPED_CONCURRENCY) {
      await Promise.all(entries.slice(i, i + REAPED_CONCURRENCY).map((entry) => this.#announce(entry, false)));
    }
  }

  /** Keeps `work` until it settles, so `close` can wait for it; never rejects. */
  #track(work: Promise<void>): Promise<void> {
    const tracked = work.catch((err: unknown) => this.#log.error({ err }, "subscription bookkeeping failed"));
    this.#inFlight.add(tracked);
    void tracked.finally(() => this.#inFlight.delete(tracked));
    return tracked;
  }
}

/** What `createPresence` needs besides the config. */
export interface CreatePresenceOptions {
  publish: (input: EventInput) => Promise<unknown>;
  log: FastifyBaseLogger;
}

/**
 * The registry for `config`: cluster-wide on Redis (`BROKER=redis`, its own connection, keys
 * under `REDIS_PREFIX`), else this process's. Started: on Redis this node is registered and
 * heartbeating (or retrying, logged, when Redis is unreachable).
 */
export async function createPresence(config: Config, options: CreatePresenceOptions): Promise<PresenceRegistry> {
  let store: PresenceStore | undefined;
  if (config.broker === "redis") {
    const { RedisPresenceStore } = await import("./presence-redis.js");
    store = new RedisPresenceStore({ url: config.redisUrl, prefix: config.redisPrefix, log: options.log });
  }
  const registry = new PresenceRegistry({ ...options, ...(store !== undefined && { store }) });
  await registry.start();
  return registry;
}

/**
 * The `lastEventId` the subscriptions routes need: the id of the newest event in the broker's
 * whole history (on Redis, the cluster's), `earliest` when history is empty.
 */
export function newestEventId(broker: Pick<Broker, "locate">): () => Promise<string> {
  return async () => (await broker.locate(EARLIEST_ID)).head?.id ?? EARLIEST_ID;
}
