import type { TopicSelection } from "../broker/broker.js";
import { ANY_TOPIC, compileSelector, type TopicSelector } from "./topic-selector.js";

/** What the index needs of a subscriber: a slot it stamps to visit each subscriber once per event. */
export interface Selecting {
  /** The number of the last `forEachMatch` that visited it. */
  visited: number;
}

/** The subscribers of one template selector, and the selector compiled. */
interface TemplateEntry<S> {
  readonly selector: TopicSelector;
  readonly subs: Set<S>;
}

/**
 * Selector → subscribers of this process. Exact topics are a Map lookup; `*` a set every event
 * visits; each distinct URI template is kept once, with the subscribers that use it (refcounted:
 * it leaves the index with its last subscriber), so an event is matched once per distinct template
 * in use, never once per subscriber.
 */
export class SelectorIndex<S extends Selecting> {
  readonly #exact = new Map<string, Set<S>>();
  readonly #any = new Set<S>();
  readonly #templates = new Map<string, TemplateEntry<S>>();
  #visit = 0;

  /** Distinct template selectors in use. */
  get templateCount(): number {
    return this.#templates.size;
  }

  add(sub: S, selection: TopicSelection): void {
    if (selection === ANY_TOPIC) {
      this.#any.add(sub);
      return;
    }
    for (const source of selection) {
      const selector = compileSelector(source);
      if (selector.template) {
        let entry = this.#templates.get(source);
        if (entry === undefined) {
          entry = { selector, subs: new Set() };
          this.#templates.set(source, entry);
        }
        entry.subs.add(sub);
      } else {
        let subs = this.#exact.get(source);
        if (subs === undefined) {
          subs = new Set();
          this.#exact.set(source, subs);
        }
        subs.add(sub);
      }
    }
  }

  remove(sub: S, selection: TopicSelection): void {
    if (selection === ANY_TOPIC) {
      this.#any.delete(sub);
      return;
    }
    for (const source of selection) {
      const subs = this.#exact.get(source);
      if (subs?.delete(sub) && subs.size === 0) this.#exact.delete(source);
      const entry = this.#templates.get(source);
      if (entry?.subs.delete(sub) && entry.subs.size === 0) this.#templates.delete(source);
    }
  }

  /**
   * Calls `visit` once for each subscriber that selects any of `topics` (an event's canonical
   * topic and alternates), however many of its selectors match. Returns how many it visited.
   */
  forEachMatch(topics: readonly string[], visit: (sub: S) => void): number {
    const stamp = ++this.#visit;
    let n = 0;
    const once = (sub: S) => {
      if (sub.visited === stamp) return;
      sub.visited = stamp;
      n++;
      visit(sub);
    };
    for (const topic of topics) {
      const subs = this.#exact.get(topic);
      if (subs !== undefined) for (const sub of subs) once(sub);
    }
    for (const sub of this.#any) once(sub);
    for (const entry of this.#templates.values()) {
      for (const topic of topics) {
        if (entry.selector.matches(topic)) {
          for (const sub of entry.subs) once(sub);
          break;
        }
      }
    }
    return n;
  }

  /** True when some subscriber could want an event: the cheap test before encoding it. */
  get empty(): boolean {
    return this.#exact.size === 0 && this.#any.size === 0 && this.#templates.size === 0;
  }

  /** Every subscription in the index, once each (for ending them all: not for hot paths). */
  all(): Set<S> {
    const subs = new Set(this.#any);
    for (const group of this.#exact.values()) for (const sub of group) subs.add(sub);
    for (const entry of this.#templates.values()) for (const sub of entry.subs) subs.add(sub);
    return subs;
  }

  /** Subscriber count per selector (`*` for streams on every topic); selectors without subscribers are absent. */
  counts(): Record<string, number> {
    // fromEntries defines own properties, so a topic named __proto__ is counted like any other.
    const counts = Object.fromEntries([...this.#exact].map(([topic, subs]) => [topic, subs.size]));
    for (const [source, entry] of this.#templates) counts[source] = entry.subs.size;
    if (this.#any.size > 0) counts[ANY_TOPIC] = this.#any.size;
    return counts;
  }
}

/** True when `selection` selects any of `topics`: the same rule as `forEachMatch`, for one subscriber (replay). */
export function selects(selection: TopicSelection, topics: readonly string[]): boolean {
  if (selection === ANY_TOPIC) return true;
  for (const source of selection) {
    const selector = compileSelector(source);
    for (const topic of topics) if (selector.matches(topic)) return true;
  }
  return false;
}
