import type { StoredEvent } from "./broker.js";

/** The `subscribe` side every broker shares: listeners added and removed, each event handed to all in order. */
export class Listeners {
  readonly #listeners = new Set<(event: StoredEvent) => void>();

  /** Adds `onEvent`; resolves `Broker.subscribe`'s unsubscribe function. */
  add(onEvent: (event: StoredEvent) => void): () => Promise<void> {
    // Wrapped so that the same function subscribed twice is two listeners.
    const listener = (event: StoredEvent) => onEvent(event);
    this.#listeners.add(listener);
    return async () => {
      this.#listeners.delete(listener);
    };
  }

  emit(event: StoredEvent): void {
    for (const listener of this.#listeners) listener(event);
  }

  clear(): void {
    this.#listeners.clear();
  }
}
