import { ANY_TOPIC, compileSelector, type TopicSelector } from "../hub/topic-selector.js";

/**
 * The topics one claim list covers (a token's `mercure.publish` or `mercure.subscribe`). Each entry
 * is a topic selector as Mercure reads it (`src/hub/topic-selector.ts`): `*` (every topic), an exact
 * topic, or a URI template (`orders/{id}` covers `orders/42`, not `orders/42/items`;
 * `orders/{+rest}` covers both). Non-string entries cover nothing. Built once per verified token;
 * `covers` is a set lookup, then one linear-time match per template entry.
 */
export class TopicGrant {
  /** Covers every topic: the list held `*`. */
  readonly all: boolean;
  readonly #exact = new Set<string>();
  readonly #templates: TopicSelector[] = [];

  constructor(entries: unknown) {
    let all = false;
    for (const entry of Array.isArray(entries) ? entries : []) {
      if (typeof entry !== "string") continue;
      if (entry === ANY_TOPIC) all = true;
      else {
        this.#exact.add(entry);
        const selector = compileSelector(entry);
        if (selector.template) this.#templates.push(selector);
      }
    }
    this.all = all;
  }

  /** True when the list covers `topic`. */
  covers(topic: string): boolean {
    if (this.all || this.#exact.has(topic)) return true;
    for (const template of this.#templates) if (template.matches(topic)) return true;
    return false;
  }

  /** True when the list covers at least one of `topics` (a private update reaches a subscriber so). */
  coversAny(topics: readonly string[]): boolean {
    for (const topic of topics) if (this.covers(topic)) return true;
    return false;
  }

  /** True when the list covers every one of `topics` (a publisher may publish an update so). */
  coversAll(topics: readonly string[]): boolean {
    for (const topic of topics) if (!this.covers(topic)) return false;
    return true;
  }
}
