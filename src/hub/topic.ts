import type { TopicSelection } from "../broker/broker.js";
import { InvalidTopicError, TooManyTopicsError } from "../errors.js";
import { ANY_TOPIC } from "./topic-selector.js";

/** The longest topic, in characters (a surrogate pair counts as one). */
export const MAX_TOPIC_LENGTH = 1_024;

/**
 * A topic name: 1 to `MAX_TOPIC_LENGTH` characters, anything Mercure accepts (IRIs with `?`, `#`,
 * `%`, `{`, `}`, spaces, any Unicode), but never CR, LF or NUL (they would break the SSE framing
 * and HTTP headers) nor a lone UTF-16 surrogate (it has no UTF-8 form). For Ajv, which compiles
 * patterns with the `u` flag: there a surrogate pair is one character and passes.
 */
export const TOPIC_PATTERN = `^[^\\r\\n\\u0000\\uD800-\\uDFFF]{1,${MAX_TOPIC_LENGTH}}$`;
const TOPIC_RE = new RegExp(TOPIC_PATTERN, "u");

/** The topic a publish or stream uses when none is given. */
export const DEFAULT_TOPIC = "default";
/** The selector for every topic, on streams only. */
export const ALL_TOPICS = ANY_TOPIC;

/** True for a valid topic name (and so a valid selector: a selector is a topic, a template or `*`). */
export function isValidTopic(topic: string): boolean {
  return TOPIC_RE.test(topic);
}

/** The reason a topic is refused, for `InvalidTopicError`: the name (cut short) and what it must be. */
export function describeBadTopic(name: string): string {
  return JSON.stringify(name.length > 64 ? `${name.slice(0, 64)}…` : name);
}

/**
 * Turns the `topic` query parameter(s) of a stream into a selection: none means `default`,
 * `*` anywhere means every topic, duplicates collapse. Each other value is an exact topic or a
 * URI template (`src/hub/topic-selector.ts`). Throws `InvalidTopicError` for a bad name,
 * `TooManyTopicsError` for more than `maxTopics` distinct topics.
 */
export function parseTopicSelection(raw: string | string[] | undefined, maxTopics = Infinity): TopicSelection {
  const names = raw === undefined ? [DEFAULT_TOPIC] : Array.isArray(raw) ? raw : [raw];
  if (names.length === 0) return [DEFAULT_TOPIC];
  return parseSelectors(names, maxTopics);
}

/** `names` as a selection, validated: `*` anywhere means every topic, duplicates collapse. */
export function parseSelectors(names: readonly string[], maxTopics = Infinity): TopicSelection {
  const topics = new Set<string>();
  for (const name of names) {
    if (name === ALL_TOPICS) return ALL_TOPICS;
    if (!isValidTopic(name)) throw new InvalidTopicError(describeBadTopic(name));
  }
  for (const name of names) topics.add(name);
  if (topics.size > maxTopics) throw new TooManyTopicsError(maxTopics, topics.size);
  return [...topics];
}

/** Every topic of an event: its canonical topic, then its alternates (Mercure's extra topics). */
export function eventTopics(event: {
  readonly topic: string;
  readonly alternates?: readonly string[];
}): readonly string[] {
  const { alternates } = event;
  return alternates === undefined || alternates.length === 0 ? [event.topic] : [event.topic, ...alternates];
}
