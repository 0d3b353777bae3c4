import createError from "@fastify/error";

/** Message arguments, then optionally `{ cause }` to keep the original error. */
type Args<T extends unknown[]> = [...T, { cause: unknown }?];

/**
 * Every error Herald answers with, in one place. Codes are never reused; `README.md` lists each
 * one (a test keeps the two in step). Messages tell a curl user what to change.
 */

export const InvalidJsonError = createError<"HERALD_INVALID_JSON", 400, Args<[string]>>(
  "HERALD_INVALID_JSON",
  'The request body is not valid JSON (%s). Send an object such as {"topic":"news","data":"hello"}, or an array of them (a batch)',
  400,
);

export const InvalidEventError = createError<"HERALD_INVALID_EVENT", 400, Args<[string]>>(
  "HERALD_INVALID_EVENT",
  "%s",
  400,
);

export const InvalidTopicError = createError<"HERALD_INVALID_TOPIC", 400, Args<[string]>>(
  "HERALD_INVALID_TOPIC",
  "Invalid topic %s: a topic is 1 to 1024 characters with no CR, LF or NUL, in valid Unicode (no lone UTF-16 surrogate); a stream also takes * for every topic, or a URI template such as orders/{id}",
  400,
);

export const InvalidQueryError = createError<"HERALD_INVALID_QUERY", 400, Args<[string]>>(
  "HERALD_INVALID_QUERY",
  "%s",
  400,
);

export const PrivateUnavailableError = createError<"HERALD_PRIVATE_UNAVAILABLE", 400, Args<[]>>(
  "HERALD_PRIVATE_UNAVAILABLE",
  'This event is "private", but SUBSCRIBER_JWT_KEY is not set, so no subscriber could ever receive it: set SUBSCRIBER_JWT_KEY, or publish without "private"',
  400,
);

export const TooManyTopicsError = createError<"HERALD_TOO_MANY_TOPICS", 400, Args<[number, number]>>(
  "HERALD_TOO_MANY_TOPICS",
  "A stream may have at most %d topics (MAX_TOPICS_PER_STREAM), this one asked for %d: split them over several streams, or use *",
  400,
);

export const TokenMissingError = createError<"HERALD_TOKEN_MISSING", 401, Args<[string]>>(
  "HERALD_TOKEN_MISSING",
  "%s needs a token: send Authorization: Bearer <JWT>",
  401,
);

export const TokenInvalidError = createError<"HERALD_TOKEN_INVALID", 401, Args<[string]>>(
  "HERALD_TOKEN_INVALID",
  "The token is refused: %s",
  401,
);

export const TokenExpiredError = createError<"HERALD_TOKEN_EXPIRED", 401, Args<[string]>>(
  "HERALD_TOKEN_EXPIRED",
  "The token expired at %s: get a new one",
  401,
);

export const TopicForbiddenError = createError<"HERALD_TOPIC_FORBIDDEN", 403, Args<[string, string]>>(
  "HERALD_TOPIC_FORBIDDEN",
  "The token is valid, but its %s claim does not cover the topic %s: use a token that lists it, a pattern that matches it, or *",
  403,
);

export const TopicReservedError = createError<"HERALD_TOPIC_RESERVED", 403, Args<[string]>>(
  "HERALD_TOPIC_RESERVED",
  "The topic %s contains /.well-known/mercure, which is reserved for the hub's own updates (subscription events): publish on another topic",
  403,
);

export const PublishOriginError = createError<"HERALD_PUBLISH_ORIGIN", 403, Args<[string]>>(
  "HERALD_PUBLISH_ORIGIN",
  "A publish authenticated by the mercureAuthorization cookie is accepted only from the origins in PUBLISH_ORIGINS, and %s is not one: add it to PUBLISH_ORIGINS, or send the token as Authorization: Bearer <JWT>",
  403,
);

export const NotFoundError = createError<"HERALD_NOT_FOUND", 404, Args<[string, string]>>(
  "HERALD_NOT_FOUND",
  "No route %s %s. Herald serves GET /events, POST /events, GET and POST /.well-known/mercure, GET /ticks, GET /stats, GET /stats/stream, GET /metrics, GET /health and the page at GET /",
  404,
);

export const IdConflictError = createError<"HERALD_ID_CONFLICT", 409, Args<[string]>>(
  "HERALD_ID_CONFLICT",
  "An event with id %s is already in history with different content: choose a new id, or resend exactly the same event",
  409,
);

export const IdRetiredError = createError<"HERALD_ID_RETIRED", 409, Args<[string]>>(
  "HERALD_ID_RETIRED",
  "An event with id %s was published before and has left history; clients may still resume from that id, so it cannot name another event: choose a new id (if this is a retry, the first attempt was stored)",
  409,
);

export const BodyTooLargeError = createError<"HERALD_BODY_TOO_LARGE", 413, Args<[number]>>(
  "HERALD_BODY_TOO_LARGE",
  "The request body is larger than %d bytes (MAX_BODY_BYTES): send less data per event",
  413,
);

export const EventTooLargeError = createError<"HERALD_EVENT_TOO_LARGE", 413, Args<[number, number]>>(
  "HERALD_EVENT_TOO_LARGE",
  "This event takes %d bytes on the wire, more than MAX_EVENT_BYTES (%d): every line of data costs 7 bytes besides its text, so send less data or fewer lines",
  413,
);

export const UnsupportedMediaTypeError = createError<"HERALD_UNSUPPORTED_MEDIA_TYPE", 415, Args<[string]>>(
  "HERALD_UNSUPPORTED_MEDIA_TYPE",
  "Content-Type %s is not supported: send application/json or application/x-www-form-urlencoded",
  415,
);

export const BrokerUnavailableError = createError<"HERALD_BROKER_UNAVAILABLE", 503, Args<[string]>>(
  "HERALD_BROKER_UNAVAILABLE",
  "Herald cannot reach its storage (%s): the event was not stored. Retry shortly; reuse the same id to make the retry safe",
  503,
);

/**
 * The publish reached the storage but no answer came back (a frozen or dropped connection), or
 * fewer replicas than `REDIS_WAIT_REPLICAS` confirmed it. Set `publishId` to the id a retry must
 * carry: the answer's body names it, and a retry with it is stored at most once.
 */
export const PublishOutcomeUnknownError = createError<"HERALD_PUBLISH_OUTCOME_UNKNOWN", 503, Args<[string, string]>>(
  "HERALD_PUBLISH_OUTCOME_UNKNOWN",
  "%s: the event may or may not have been stored. Retry with the same id (%s, also in this answer's id field): it is then stored exactly once",
  503,
);

export const RateLimitedError = createError<"HERALD_RATE_LIMITED", 429, Args<[number, string]>>(
  "HERALD_RATE_LIMITED",
  "More than %d publishes in a minute from this client (PUBLISH_RATE_LIMIT): retry in %s, or have Herald's operator raise PUBLISH_RATE_LIMIT (0 lifts it)",
  429,
);

export const IpConnectionLimitError = createError<"HERALD_IP_CONNECTION_LIMIT", 429, Args<[number, number]>>(
  "HERALD_IP_CONNECTION_LIMIT",
  "This address already has %d open streams (MAX_CONNECTIONS_PER_IP): close one, or retry in %d s",
  429,
);

export const ConnectionLimitError = createError<"HERALD_CONNECTION_LIMIT", 503, Args<[number, number]>>(
  "HERALD_CONNECTION_LIMIT",
  "Herald is serving its maximum of %d open streams (MAX_CONNECTIONS): retry in %d s",
  503,
);

export const SubscriptionNotFoundError = createError<"HERALD_SUBSCRIPTION_NOT_FOUND", 404, Args<[string, string]>>(
  "HERALD_SUBSCRIPTION_NOT_FOUND",
  "No active subscription of subscriber %s to the topic selector %s: GET /.well-known/mercure/subscriptions lists the active ones",
  404,
);

/**
 * Marks `err` as about the batch item at `index`: its message starts `item <index>: `, and
 * `index` says which, whichever front door or layer refused it.
 */
export function itemError<E extends Error>(err: E, index: number): E & { index: number } {
  err.message = `item ${index}: ${err.message}`;
  return Object.assign(err, { index });
}

/** Every registered error constructor, for the test that checks the README table. */
export const ERRORS = [
  InvalidJsonError,
  InvalidEventError,
  InvalidTopicError,
  InvalidQueryError,
  PrivateUnavailableError,
  TooManyTopicsError,
  TokenMissingError,
  TokenInvalidError,
  TokenExpiredError,
  TopicForbiddenError,
  TopicReservedError,
  PublishOriginError,
  NotFoundError,
  IdConflictError,
  IdRetiredError,
  BodyTooLargeError,
  EventTooLargeError,
  UnsupportedMediaTypeError,
  RateLimitedError,
  IpConnectionLimitError,
  ConnectionLimitError,
  BrokerUnavailableError,
  SubscriptionNotFoundError,
  PublishOutcomeUnknownError,
] as const;
