import { randomBytes } from "node:crypto";
import { IdConflictError, IdRetiredError } from "../errors.js";
import {
  atItem,
  BEFORE_FIRST_POS,
  type Broker,
  type BrokerStatus,
  EARLIEST_ID,
  type EventInput,
  type Location,
  type PublishResult,
  posSeq,
  retiredIdCapacity,
  type StoredEvent,
  sameContent,
  seqPos,
} from "./broker.js";
import { Listeners } from "./listeners.js";

/** Options for `MemoryBroker`. */
export interface MemoryBrokerOptions {
  /** How many events history keeps, across all topics; the oldest is dropped first. */
  historySize: number;
  /** Events older than this many seconds leave history; 0 or absent keeps them. */
  historyTtlS?: number;
}

/**
 * The default broker: history in a bounded ring buffer in this process's memory, and the ids that
 * left it in a bounded set. Single node only, and a restart forgets everything (ids from a
 * previous run are then reported as not found, and publisher ids may be used again).
 * Ids are `<run>-<sequence>`: the run part, random per process, is what tells a previous run's id apart.
 */
export class MemoryBroker implements Broker {
  readonly #size: number;
  readonly #ttlMs: number;
  readonly #ring: (StoredEvent | undefined)[];
  /** Sequence number of every id still in history. */
  readonly #seqById = new Map<string, number>();
  /** Ids that left history, at most `#retiredCapacity`: refused to new events. */
  readonly #retired = new Set<string>();
  /**
   * The same ids in the order they left, in a ring: the oldest is forgotten in O(1). (Taking a
   * Set's first value after many deletions walks past every deleted entry.)
   */
  readonly #retiredOrder: (string | undefined)[];
  #retiredNext = 0;
  readonly #listeners = new Listeners();
  readonly #run = randomBytes(4).readUInt32BE().toString(36);
  /** Sequence number of the newest event; 0 before the first. */
  #seq = 0;
  /** Sequence number of the oldest event still in history. */
  #oldest = 1;

  constructor(options: MemoryBrokerOptions) {
    this.#size = options.historySize;
    this.#ttlMs = (options.historyTtlS ?? 0) * 1000;
    this.#ring = new Array(options.historySize);
    this.#retiredOrder = new Array(retiredIdCapacity(options.historySize));
  }

  async publish(input: EventInput): Promise<PublishResult> {
    return (await this.publishBatch([input]))[0] as PublishResult;
  }

  async publishBatch(inputs: readonly EventInput[]): Promise<PublishResult[]> {
    this.#expire();
    // Every item is checked before any is stored (all or nothing), and what each repeats is
    // noted then: storing the batch may evict the very event an item repeats.
    const repeats: (StoredEvent | number | undefined)[] = [];
    const firstOfBatch = new Map<string, number>();
    for (const [index, input] of inputs.entries()) {
      if (input.id === undefined) {
        repeats.push(undefined);
        continue;
      }
      const seq = this.#seqById.get(input.id);
      const earlier = firstOfBatch.get(input.id);
      const stored = seq !== undefined ? this.#at(seq) : earlier !== undefined ? inputs[earlier] : undefined;
      if (stored !== undefined && !sameContent(stored, input)) {
        throw atItem(new IdConflictError(JSON.stringify(input.id)), index);
      }
      if (stored === undefined && this.#retired.has(input.id)) {
        throw atItem(new IdRetiredError(JSON.stringify(input.id)), index);
      }
      repeats.push(seq !== undefined ? this.#at(seq) : earlier);
      if (stored === undefined) firstOfBatch.set(input.id, index);
    }
    const results: PublishResult[] = [];
    for (const [index, input] of inputs.entries()) {
      const repeat = repeats[index];
      if (repeat === undefined) results.push({ event: this.#append(input, firstOfBatch), duplicate: false });
      else if (typeof repeat === "number")
        results.push({ event: (results[repeat] as PublishResult).event, duplicate: true });
      else results.push({ event: repeat, duplicate: true });
    }
    for (const { event, duplicate } of results) if (!duplicate) this.#listeners.emit(event);
    return results;
  }

  /** Stores one checked input under its id, or under a new one that none of `batchIds` takes. */
  #append(input: EventInput, batchIds: ReadonlyMap<string, number>): StoredEvent {
    const seq = ++this.#seq;
    let id = input.id;
    if (id === undefined) {
      id = `${this.#run}-${seq}`;
      // A publisher may have chosen this very id earlier; a suffix keeps ids unique.
      while (this.#seqById.has(id) || this.#retired.has(id) || batchIds.has(id))
        id = `${this.#run}-${seq}-${randomBytes(3).toString("hex")}`;
    }
    if (seq - this.#oldest >= this.#size) this.#evictOldest();
    const event: StoredEvent = { ...input, id, time: Date.now(), pos: seqPos(seq) };
    this.#ring[seq % this.#size] = event;
    this.#seqById.set(id, seq);
    return event;
  }

  async subscribe(onEvent: (event: StoredEvent) => void): Promise<() => Promise<void>> {
    return this.#listeners.add(onEvent);
  }

  async locate(id: string): Promise<Location> {
    this.#expire();
    const newest = this.#seq >= this.#oldest ? this.#at(this.#seq) : undefined;
    const head = newest && { id: newest.id, pos: newest.pos };
    if (id === EARLIEST_ID) return { found: true, pos: BEFORE_FIRST_POS, head };
    const seq = this.#seqById.get(id);
    return seq === undefined ? { found: false, head } : { found: true, pos: seqPos(seq), head };
  }

  async read(afterPos: string, limit: number): Promise<StoredEvent[]> {
    this.#expire();
    const events: StoredEvent[] = [];
    for (let seq = Math.max(posSeq(afterPos) + 1, this.#oldest); seq <= this.#seq && events.length < limit; seq++) {
      events.push(this.#at(seq));
    }
    return events;
  }

  status(): BrokerStatus {
    return { ok: true };
  }

  async close(): Promise<void> {
    this.#listeners.clear();
  }

  /** The event at `seq`, which the caller knows to be in history. */
  #at(seq: number): StoredEvent {
    return this.#ring[seq % this.#size] as StoredEvent;
  }

  #evictOldest(): void {
    const slot = this.#oldest % this.#size;
    const evicted = this.#ring[slot];
    if (evicted !== undefined) {
      this.#seqById.delete(evicted.id);
      const forgotten = this.#retiredOrder[this.#retiredNext];
      if (forgotten !== undefined) this.#retired.delete(forgotten);
      this.#retiredOrder[this.#retiredNext] = evicted.id;
      this.#retiredNext = (this.#retiredNext + 1) % this.#retiredOrder.length;
      this.#retired.add(evicted.id);
    }
    this.#ring[slot] = undefined;
    this.#oldest++;
  }

  /** Drops events older than the TTL, oldest first. */
  #expire(): void {
    if (this.#ttlMs === 0) return;
    const cutoff = Date.now() - this.#ttlMs;
    while (this.#oldest <= this.#seq && this.#at(this.#oldest).time < cutoff) this.#evictOldest();
  }
}
