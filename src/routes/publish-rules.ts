import type { FastifyRequest } from "fastify";
import type { TokenClaims } from "../auth/jwt-verifier.js";
import { InvalidTopicError, RateLimitedError, TopicReservedError } from "../errors.js";
import { describeBadTopic, isValidTopic } from "../hub/topic.js";
import { ANY_TOPIC } from "../hub/topic-selector.js";
import { clientKey } from "../limits/client-key.js";

/**
 * The rules every publish follows, whichever front door it comes through (`POST /events`,
 * `POST /.well-known/mercure`).
 *
 * No CR, LF or NUL in a field: these would end an SSE field early (header injection on the wire).
 * No lone UTF-16 surrogate either: it has no UTF-8 form, so clients would get U+FFFD, and a resume
 * by that id would not find it. (Ajv compiles patterns with the `u` flag, so a surrogate pair still passes.)
 */
export const FIELD_PATTERN = "^[^\\r\\n\\u0000\\uD800-\\uDFFF]{1,256}$";
/** A lone surrogate, under the `u` flag; a well-formed pair is one code point and does not match. */
export const LONE_SURROGATE = /\p{Cs}/u;
/** A publisher's id: a field value, but not `<digits>-<digits>`, the form of ids Herald assigns itself (Redis stream ids). */
export const ID_PATTERN = "^(?![0-9]+-[0-9]+$)[^\\r\\n\\u0000\\uD800-\\uDFFF]{1,256}$";
/** The largest `retry`, in ms (what a 32-bit signed timer takes). */
export const MAX_RETRY_MS = 2_147_483_647;

/** What each field takes, said the same way by both front doors. */
export const FIELD_RULES: Record<string, string> = {
  event: "event must be 1 to 256 characters with no CR, LF or NUL, in valid Unicode (no lone UTF-16 surrogate)",
  id: "id must be 1 to 256 characters with no CR, LF or NUL, in valid Unicode (no lone UTF-16 surrogate), and not of the form <digits>-<digits>, which Herald keeps for the ids it assigns",
  retry: "retry must be a whole number of milliseconds from 0 to 2147483647",
  private: "private must be true or false",
};

/** Topics containing this are the hub's own (Mercure's subscription events); publishers may not use them. */
export const RESERVED_TOPIC_PART = "/.well-known/mercure";

/** Checks each topic of a publish: a valid name and not `*` (`InvalidTopicError`), not reserved (`TopicReservedError`). */
export function checkPublishTopics(topics: readonly string[]): void {
  for (const topic of topics) {
    // `*` selects every topic on a stream; as a topic it would be one only `*` streams see, by accident.
    if (!isValidTopic(topic) || topic === ANY_TOPIC) throw new InvalidTopicError(describeBadTopic(topic));
    if (topic.includes(RESERVED_TOPIC_PART)) throw new TopicReservedError(describeBadTopic(topic));
  }
}

/**
 * `@fastify/rate-limit` route options for `PUBLISH_RATE_LIMIT`: publishes are counted per token
 * subject when `claimsOf` finds one, else per client address. Runs before the body is read.
 */
export function publishRateLimit(max: number, claimsOf: (request: FastifyRequest) => TokenClaims | undefined) {
  return {
    rateLimit: {
      max,
      timeWindow: 60_000,
      hook: "preParsing" as const,
      keyGenerator: (request: FastifyRequest) => {
        const subject = claimsOf(request)?.subject;
        return subject !== undefined ? `sub:${subject}` : `ip:${clientKey(request.ip)}`;
      },
      errorResponseBuilder: (_request: FastifyRequest, context: { max: number; after: string }) =>
        new RateLimitedError(context.max, context.after),
    },
  };
}
