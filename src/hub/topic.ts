import type { TopicSelection } from "../broker/broker.js";
import { InvalidTopicError, TooManyTopicsError } from "../errors.js";

/** A topic name: 1–256 characters, safe in a URL path or query without escaping (`orders/42`, `user:7`). */
export const TOPIC_PATTERN = "^[A-Za-z0-9_.:/@~-]{1,256}$";
const TOPIC_RE = new RegExp(TOPIC_PATTERN);

/** The topic a publish or stream uses when none is given. */
export const DEFAULT_TOPIC = "default";
/** The selector for every topic, on streams only. */
export const ALL_TOPICS = "*";

/** True for a valid topic name. */
export function isValidTopic(topic: string): boolean {
  return TOPIC_RE.test(topic);
}

/** For `?topic=a,b`: a stream takes several topics as `topic=` repeated, never as one list. */
function severalTopicsHint(name: string): string {
  const parts = name.split(",").filter(Boolean);
  if (parts.length < 2) return "";
  const query = parts.slice(0, 3).map((part) => `topic=${encodeURIComponent(part.trim())}`);
  return ` (for several topics, repeat topic=: ?${query.join("&")})`;
}

/**
 * Turns the `topic` query parameter(s) of a stream into a selection: none means `default`,
 * `*` anywhere means every topic, duplicates collapse. Throws `InvalidTopicError` for a bad name,
 * `TooManyTopicsError` for more than `maxTopics` distinct topics.
 */
export function parseTopicSelection(raw: string | string[] | undefined, maxTopics = Infinity): TopicSelection {
  const names = raw === undefined ? [DEFAULT_TOPIC] : Array.isArray(raw) ? raw : [raw];
  if (names.length === 0) return [DEFAULT_TOPIC];
  const topics = new Set<string>();
  for (const name of names) {
    if (name === ALL_TOPICS) return ALL_TOPICS;
    if (!isValidTopic(name))
      throw new InvalidTopicError(`${JSON.stringify(name.slice(0, 300))}${severalTopicsHint(name)}`);
    topics.add(name);
  }
  if (topics.size > maxTopics) throw new TooManyTopicsError(maxTopics, topics.size);
  return [...topics];
}
