import createError from "@fastify/error";

/** Message arguments, then optionally `{ cause }` to keep the original error. */
type Args<T extends unknown[]> = [...T, { cause: unknown }?];

/**
 * Every error Herald answers with, in one place. Codes are never reused; `README.md` lists each
 * one (a test keeps the two in step). Messages tell a curl user what to change.
 */

export const InvalidJsonError = createError<"HERALD_INVALID_JSON", 400, Args<[string]>>(
  "HERALD_INVALID_JSON",
  'The request body is not valid JSON (%s). Send an object such as {"topic":"news","data":"hello"}',
  400,
);

export const InvalidEventError = createError<"HERALD_INVALID_EVENT", 400, Args<[string]>>(
  "HERALD_INVALID_EVENT",
  "%s",
  400,
);

export const InvalidTopicError = createError<"HERALD_INVALID_TOPIC", 400, Args<[string]>>(
  "HERALD_INVALID_TOPIC",
  "Invalid topic %s: a topic is 1 to 256 characters from A-Z a-z 0-9 and _ - . : / @ ~ (GET /events also takes * for every topic)",
  400,
);

export const InvalidQueryError = createError<"HERALD_INVALID_QUERY", 400, Args<[string]>>(
  "HERALD_INVALID_QUERY",
  "%s",
  400,
);

export const NotFoundError = createError<"HERALD_NOT_FOUND", 404, Args<[string, string]>>(
  "HERALD_NOT_FOUND",
  "No route %s %s. Herald serves GET /events, POST /events, GET /ticks, GET /stats, GET /health and the page at GET /",
  404,
);

export const IdConflictError = createError<"HERALD_ID_CONFLICT", 409, Args<[string]>>(
  "HERALD_ID_CONFLICT",
  "An event with id %s is already in history with different content: choose a new id, or resend exactly the same event",
  409,
);

export const BodyTooLargeError = createError<"HERALD_BODY_TOO_LARGE", 413, Args<[number]>>(
  "HERALD_BODY_TOO_LARGE",
  "The request body is larger than %d bytes (MAX_BODY_BYTES): send less data per event",
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

/** Every registered error constructor, for the test that checks the README table. */
export const ERRORS = [
  InvalidJsonError,
  InvalidEventError,
  InvalidTopicError,
  InvalidQueryError,
  NotFoundError,
  IdConflictError,
  BodyTooLargeError,
  UnsupportedMediaTypeError,
  BrokerUnavailableError,
] as const;
