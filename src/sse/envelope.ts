import type { StoredEvent } from "../broker/broker.js";
import { encodeEvent } from "./encode.js";

/** The JSON `data` of an event sent in an envelope (`GET /events?envelope=1`). */
export interface Envelope {
  topic: string;
  /** The event name; absent for the default type, `message`. */
  event?: string;
  /** The data as a plain stream sends it: text. */
  data: string;
  /** When Herald accepted the event, as ISO-8601. */
  time: string;
  retry?: number;
  /** True for an event only token holders receive (`"private": true` when published). */
  private?: true;
  /** True when the event comes from a Last-Event-ID replay rather than the live feed. */
  replayed?: true;
}

/**
 * Encodes `event` for a stream opened with `envelope=1`: one unnamed event with the same `id`
 * and `retry` as on a plain stream (so resuming works the same), whose data is an `Envelope`.
 * It carries what the plain format cannot: the topic, the event name for clients that cannot
 * listen for names they do not know yet (EventSource delivers a named event only to a listener
 * registered for that name), the time, and whether the event was replayed.
 */
export function encodeEnvelope(event: StoredEvent, replayed: boolean): Buffer {
  const envelope: Envelope = {
    topic: event.topic,
    ...(event.event !== undefined && { event: event.event }),
    data: event.data,
    time: new Date(event.time).toISOString(),
    ...(event.retry !== undefined && { retry: event.retry }),
    ...(event.private && { private: true }),
    ...(replayed && { replayed: true }),
  };
  return encodeEvent({
    id: event.id,
    ...(event.retry !== undefined && { retry: event.retry }),
    data: JSON.stringify(envelope),
  });
}
