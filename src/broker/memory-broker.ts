import { randomBytes } from "node:crypto";
import { IdConflictError } from "../errors.js";
import type { Broker, EventInput, HistoryResult, PublishResult, StoredEvent, TopicSelection } from "./broker.js";

/** Options for `MemoryBroker`. */
export interface MemoryBrokerOptions {
  /** How many events history keeps, across all topics; the oldest is dropped first. */
  historySize: number;
}

function sameContent(a: EventInput, b: EventInput): boolean {
  return (
    a.topic === b.topic && a.data === b.data && a.event === b.event && a.retry === b.retry && !a.private === !b.private
  );
}

/**
 * The default broker: history in a bounded ring buffer in this process's memory. Single node
 * only, and a restart forgets everything (ids from a previous run are then reported as not found).
 * Ids are `<run>-<sequence>`: the run part, random per process, is what tells a previous run's id apart.
 */
export class MemoryBroker implements Broker {
  readonly #size: number;
  readonly #ring: (StoredEvent | undefined)[];
  /** Sequence number of every id still in history. */
  readonly #seqById = new Map<string, number>();
  readonly #listeners = new Set<(event: StoredEvent) => void>();
  readonly #run = randomBytes(4).readUInt32BE().toString(36);
  /** Sequence number of the newest event; 0 before the first. */
  #seq = 0;

  constructor(options: MemoryBrokerOptions) {
    this.#size = options.historySize;
    this.#ring = new Array(options.historySize);
  }

  async publish(input: EventInput): Promise<PublishResult> {
    if (input.id !== undefined) {
      const seq = this.#seqById.get(input.id);
      if (seq !== undefined) {
        const stored = this.#at(seq) as StoredEvent;
        if (!sameContent(stored, input)) throw new IdConflictError(JSON.stringify(input.id));
        return { event: stored, duplicate: true };
      }
    }
    const seq = ++this.#seq;
    let id = input.id;
    if (id === undefined) {
      id = `${this.#run}-${seq}`;
      // A publisher may have chosen this very id earlier; skipping a number keeps ids unique.
      while (this.#seqById.has(id)) id = `${this.#run}-${seq}-${randomBytes(3).toString("hex")}`;
    }
    const event: StoredEvent = { ...input, id, time: Date.now() };
    const slot = seq % this.#size;
    const evicted = this.#ring[slot];
    if (evicted !== undefined) this.#seqById.delete(evicted.id);
    this.#ring[slot] = event;
    this.#seqById.set(id, seq);
    for (const listener of this.#listeners) listener(event);
    return { event, duplicate: false };
  }

  async subscribe(onEvent: (event: StoredEvent) => void): Promise<() => Promise<void>> {
    const listener = (event: StoredEvent) => onEvent(event);
    this.#listeners.add(listener);
    return async () => {
      this.#listeners.delete(listener);
    };
  }

  async history(topics: TopicSelection, afterId: string, limit: number): Promise<HistoryResult> {
    const head = this.#seq > 0 ? this.#at(this.#seq)?.id : undefined;
    const from = this.#seqById.get(afterId);
    if (from === undefined) return { events: [], found: false, head };
    const wanted = topics === "*" ? undefined : new Set(topics);
    const events: StoredEvent[] = [];
    // The scan is bounded by the ring's size: history is never longer than HISTORY_SIZE.
    for (let seq = from + 1; seq <= this.#seq && events.length < limit; seq++) {
      const event = this.#at(seq) as StoredEvent;
      if (wanted === undefined || wanted.has(event.topic)) events.push(event);
    }
    return { events, found: true, head };
  }

  async close(): Promise<void> {
    this.#listeners.clear();
  }

  #at(seq: number): StoredEvent | undefined {
    return this.#ring[seq % this.#size];
  }
}
