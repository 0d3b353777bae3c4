import { randomBytes } from "node:crypto";
import { IdConflictError, IdRetiredError } from "../errors.js";
import {
  assignedSeq,
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
  storedEvent,
} from "./broker.js";
import { Listeners } from "./listeners.js";

/** Options for `MemoryBroker`. */
export interface MemoryBrokerOptions {
  /** How many events history keeps, across all topics; the oldest is dropped first. */
  historySize: number;
  /** Events older than this many seconds leave history; 0 or absent keeps them. */
  historyTtlS?: number;
}

/** The publisher ids of a publish that has none. */
const NO_BATCH_IDS: ReadonlyMap<string, number> = new Map();

/**
 * The default broker: history in a bounded ring buffer in this process's memory, and the ids that
 * left it in a bounded set. Single node only, and a restart forgets everything (ids from a
 * previous run are then reported as not found, and publisher ids may be used again).
 * Ids are `<run>-<sequence>`: the run part, random per process, is what tells a previous run's id apart.
 * Such an id names its own place in the ring, so only the others (publishers' ids, and the rare
 * assigned id that needed a suffix) are kept in maps: an event with an assigned id costs no map work.
 */
export class MemoryBroker implements Broker {
  readonly #size: number;
  readonly #ttlMs: number;
  readonly #ring: (StoredEvent | undefined)[];
  /** Per ring slot: 1 when its event's id is in `#seqById` (not the `<run>-<sequence>` it would be given). */
  readonly #mapped: Uint8Array;
  /** Sequence number of every id still in history that does not name its own sequence number. */
  readonly #seqById = new Map<string, number>();
  /**
   * Of the last `retiredIdCapacity` ids that left history, those that were in `#seqById`: refused
   * to new events. (The others are `<run>-<sequence>` ids, retired while their sequence number
   * is within that many of the oldest in history.)
   */
  readonly #retired = new Set<string>();
  /**
   * Every id that left history, in a ring of `retiredIdCapacity` (undefined for a `<run>-<sequence>`
   * id): the oldest is forgotten in O(1). (Taking a Set's first value after many deletions walks
   * past every deleted entry.)
   */
  readonly #retiredOrder: (string | undefined)[];
  #retiredNext = 0;
  readonly #listeners = new Listeners();
  readonly #run = randomBytes(4).readUInt32BE().toString(36);
  /** What every id this broker assigns starts with. */
  readonly #prefix = `${this.#run}-`;
  /**
   * Whether a publisher ever chose an id that starts with `#prefix`: from then on an assigned id
   * is checked against stored, retired and batch ids (and given a suffix when taken).
   */
  #prefixChosen = false;
  /** Sequence number of the newest event; 0 before the first. */
  #seq = 0;
  /** Sequence number of the oldest event still in history. */
  #oldest = 1;

  constructor(options: MemoryBrokerOptions) {
    this.#size = options.historySize;
    this.#ttlMs = (options.historyTtlS ?? 0) * 1000;
    this.#ring = new Array(options.historySize);
    this.#mapped = new Uint8Array(options.historySize);
    this.#retiredOrder = new Array(retiredIdCapacity(options.historySize));
  }

  async publish(input: EventInput): Promise<PublishResult> {
    if (input.id !== undefined) return (await this.publishBatch([input]))[0] as PublishResult;
    // Without a publisher id nothing can be refused or repeated: stored at once, no batch bookkeeping.
    this.#expire();
    const event = this.#append(input, Date.now(), NO_BATCH_IDS);
    this.#listeners.emit(event);
    return { event, duplicate: false };
  }

  async publishBatch(inputs: readonly EventInput[]): Promise<PublishResult[]> {
    this.#expire();
    // Every item is checked before any is stored (all or nothing), and what each repeats is
    // noted then: storing the batch may evict the very event an item repeats.
    const repeats: (StoredEvent | number | undefined)[] = [];
    const firstOfBatch = new Map<string, number>();
    for (let index = 0; index < inputs.length; index++) {
      const input = inputs[index] as EventInput;
      if (input.id === undefined) {
        repeats.push(undefined);
        continue;
      }
      if (input.id.startsWith(this.#prefix)) this.#prefixChosen = true;
      const seq = this.#seqOf(input.id);
      const earlier = firstOfBatch.get(input.id);
      const stored = seq !== undefined ? this.#at(seq) : earlier !== undefined ? inputs[earlier] : undefined;
      if (stored !== undefined && !sameContent(stored, input)) {
        throw atItem(new IdConflictError(JSON.stringify(input.id)), index);
      }
      if (stored === undefined && this.#isRetired(input.id)) {
        throw atItem(new IdRetiredError(JSON.stringify(input.id)), index);
      }
      repeats.push(seq !== undefined ? this.#at(seq) : earlier);
      if (stored === undefined) firstOfBatch.set(input.id, index);
    }
    const results: PublishResult[] = [];
    const time = Date.now();
    for (let index = 0; index < inputs.length; index++) {
      const repeat = repeats[index];
      if (repeat === undefined) {
        results.push({ event: this.#append(inputs[index] as EventInput, time, firstOfBatch), duplicate: false });
      } else if (typeof repeat === "number")
        results.push({ event: (results[repeat] as PublishResult).event, duplicate: true });
      else results.push({ event: repeat, duplicate: true });
    }
    for (const { event, duplicate } of results) if (!duplicate) this.#listeners.emit(event);
    return results;
  }

  /** Stores one checked input under its id, or under a new one that none of `batchIds` takes. */
  #append(input: EventInput, time: number, batchIds: ReadonlyMap<string, number>): StoredEvent {
    const seq = ++this.#seq;
    let id = input.id;
    let mapped = id !== undefined;
    if (id === undefined) {
      id = this.#prefix + seq;
      // A publisher may have chosen this very id earlier; a suffix keeps ids unique.
      while (this.#prefixChosen && (this.#seqById.has(id) || this.#retired.has(id) || batchIds.has(id))) {
        id = `${this.#prefix}${seq}-${randomBytes(3).toString("hex")}`;
        mapped = true;
      }
    }
    if (seq - this.#oldest >= this.#size) this.#evictOldest();
    const event = storedEvent(input, id, time, seqPos(seq));
    const slot = seq % this.#size;
    this.#ring[slot] = event;
    this.#mapped[slot] = mapped ? 1 : 0;
    if (mapped) this.#seqById.set(id, seq);
    return event;
  }

  /** The sequence number of `id` when it is in history. */
  #seqOf(id: string): number | undefined {
    const mapped = this.#seqById.get(id);
    if (mapped !== undefined) return mapped;
    const seq = assignedSeq(this.#prefix, id);
    return seq !== undefined && seq >= this.#oldest && seq <= this.#seq && this.#at(seq).id === id ? seq : undefined;
  }

  /**
   * Whether `id` is one of the last `retiredIdCapacity` ids that left history. A `<run>-<sequence>`
   * id counts as such while its sequence number is that recent, even if its event had another id.
   */
  #isRetired(id: string): boolean {
    if (this.#retired.has(id)) return true;
    const seq = assignedSeq(this.#prefix, id);
    return seq !== undefined && seq < this.#oldest && seq >= this.#oldest - this.#retiredOrder.length;
  }

  async subscribe(onEvent: (event: StoredEvent) => void): Promise<() => Promise<void>> {
    return this.#listeners.add(onEvent);
  }

  async locate(id: string): Promise<Location> {
    this.#expire();
    const newest = this.#seq >= this.#oldest ? this.#at(this.#seq) : undefined;
    const head = newest && { id: newest.id, pos: newest.pos };
    if (id === EARLIEST_ID) return { found: true, pos: BEFORE_FIRST_POS, head };
    const seq = this.#seqOf(id);
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
      const forgotten = this.#retiredOrder[this.#retiredNext];
      if (forgotten !== undefined) this.#retired.delete(forgotten);
      if (this.#mapped[slot] === 1) {
        this.#seqById.delete(evicted.id);
        this.#retired.add(evicted.id);
        this.#retiredOrder[this.#retiredNext] = evicted.id;
      } else {
        this.#retiredOrder[this.#retiredNext] = undefined;
      }
      this.#retiredNext = (this.#retiredNext + 1) % this.#retiredOrder.length;
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
