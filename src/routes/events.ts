import type { FastifyInstance, FastifyRequest, FastifySchemaValidationError } from "fastify";
import type { JwtVerifier, TokenClaims } from "../auth/jwt-verifier.js";
import { bearerToken, subscriberToken } from "../auth/request-token.js";
import type { TokenExpiry } from "../auth/token-expiry.js";
import type { EventInput, StoredEvent } from "../broker/broker.js";
import {
  InvalidEventError,
  InvalidQueryError,
  InvalidTopicError,
  PrivateUnavailableError,
  RateLimitedError,
  TokenMissingError,
  TopicForbiddenError,
} from "../errors.js";
import type { Hub } from "../hub/hub.js";
import { DEFAULT_TOPIC, isValidTopic, parseTopicSelection, TOPIC_PATTERN } from "../hub/topic.js";
import { clientKey } from "../limits/client-key.js";
import type { StreamRegistry } from "../sse/stream-registry.js";
import { rejectUnknownQuery } from "./query.js";
import { resumeId } from "./resume-id.js";

/** Options for the events routes. */
export interface EventsRoutesOptions {
  hub: Hub;
  streams: StreamRegistry;
  /** Checks publishers' tokens; without it anyone may publish. */
  publisher?: JwtVerifier;
  /** Checks subscribers' tokens; without it private events are refused. */
  subscriber?: JwtVerifier;
  /** Ends streams whose token expires. */
  expiry: TokenExpiry;
  maxTopicsPerStream: number;
  /** Publishes per minute per client; 0 for no limit. */
  publishRateLimit: number;
}

declare module "fastify" {
  interface FastifyRequest {
    /** The verified publisher token of a `POST /events`, when `PUBLISHER_JWT_KEY` is set. */
    publisher: TokenClaims | undefined;
  }
}

/**
 * No CR, LF or NUL: these would end an SSE field early (header injection on the wire). No lone
 * UTF-16 surrogate either: it has no UTF-8 form, so clients would get U+FFFD, and a resume by that
 * id would not find it. (Ajv compiles patterns with the `u` flag, so a surrogate pair still passes.)
 */
const FIELD_PATTERN = "^[^\\r\\n\\u0000\\uD800-\\uDFFF]{1,256}$";
/** A lone surrogate, under the `u` flag; a well-formed pair is one code point and does not match. */
const LONE_SURROGATE = /\p{Cs}/u;
/** A publisher's id: a field value, but not `<digits>-<digits>`, the form of ids Herald assigns itself (Redis stream ids). */
const ID_PATTERN = "^(?![0-9]+-[0-9]+$)[^\\r\\n\\u0000\\uD800-\\uDFFF]{1,256}$";

/** A publish body after schema validation (JSON, or a form with its text fields converted). */
export interface PublishBody {
  topic?: string;
  event?: string;
  data: unknown;
  id?: string;
  retry?: number;
  private?: boolean;
}

/** The schema of a `POST /events` body, shared by the route and the in-process `publish`. */
export const publishSchema = {
  body: {
    type: "object",
    required: ["data"],
    additionalProperties: false,
    properties: {
      topic: { type: "string", pattern: TOPIC_PATTERN },
      event: { type: "string", pattern: FIELD_PATTERN },
      id: { type: "string", pattern: ID_PATTERN },
      retry: { type: "integer", minimum: 0, maximum: 2_147_483_647 },
      private: { type: "boolean" },
      data: {},
    },
  },
} as const;

const FIELD_RULES: Record<string, string> = {
  event: "event must be 1 to 256 characters with no CR, LF or NUL, in valid Unicode (no lone UTF-16 surrogate)",
  id: "id must be 1 to 256 characters with no CR, LF or NUL, in valid Unicode (no lone UTF-16 surrogate), and not of the form <digits>-<digits>, which Herald keeps for the ids it assigns",
  retry: "retry must be a whole number of milliseconds from 0 to 2147483647",
  private: "private must be true or false",
};

/** Turns the first schema violation into an error that says which field is wrong and what it takes. */
export function bodyError(errors: FastifySchemaValidationError[]): Error {
  const first = errors[0];
  const params = first?.params as Record<string, unknown> | undefined;
  if (first?.keyword === "required") {
    return new InvalidEventError(
      `${String(params?.missingProperty)} is required: send it as JSON {"data": ...} or as a form field data=...`,
    );
  }
  if (first?.keyword === "additionalProperties") {
    return new InvalidEventError(
      `Unknown field ${JSON.stringify(params?.additionalProperty)}: an event has topic, event, data, id, retry and private`,
    );
  }
  const field = first?.instancePath.split("/")[1] ?? "";
  if (field === "topic") return new InvalidTopicError("in the body");
  const rule = FIELD_RULES[field];
  if (rule !== undefined) return new InvalidEventError(rule);
  return new InvalidEventError('The body must be a JSON object such as {"topic":"news","data":"hello"}');
}

/** Form fields an event has once; a form that repeats one (`-d data=x -d data=y`) is refused, not stored as a list. */
const SINGLE_FIELDS = ["data", "event", "id", "retry", "private"] as const;

function rejectRepeatedFields(body: Record<string, unknown> | undefined): void {
  for (const name of SINGLE_FIELDS) {
    const value = body?.[name];
    if (!Array.isArray(value)) continue;
    const advice =
      name === "data"
        ? "send one data field; data of several lines is one field with newlines in it (curl --data-urlencode $'data=line 1\nline 2')"
        : `send one ${name} field`;
    throw new InvalidEventError(`The form has ${value.length} ${name} fields: ${advice}`);
  }
}

/** JSON strings are sent as their text; any other JSON value as its JSON encoding. */
function encodeData(data: unknown): string {
  if (typeof data === "string") {
    if (LONE_SURROGATE.test(data)) {
      throw new InvalidEventError(
        "data has a lone UTF-16 surrogate, which cannot be sent as UTF-8: send valid Unicode",
      );
    }
    return data;
  }
  try {
    return JSON.stringify(data);
  } catch (err) {
    // JSON.parse takes any depth; JSON.stringify recurses and runs out of stack on thousands of levels.
    throw new InvalidEventError("data is nested too deeply: keep it under a few hundred levels", { cause: err });
  }
}

/** A validated body as the broker takes it. */
export function toEventInput(body: PublishBody): EventInput {
  return {
    topic: body.topic ?? DEFAULT_TOPIC,
    data: encodeData(body.data),
    ...(body.event !== undefined && { event: body.event }),
    ...(body.id !== undefined && { id: body.id }),
    ...(body.retry !== undefined && { retry: body.retry }),
    ...(body.private === true && { private: true }),
  };
}

/** Publishes are counted per token subject when there is one, else per client address. */
function publisherKey(request: FastifyRequest): string {
  const subject = request.publisher?.subject;
  return subject !== undefined ? `sub:${subject}` : `ip:${clientKey(request.ip)}`;
}

/** `envelope=1` asks for every event in an envelope (see `encodeEnvelope`); absent, the plain format. */
function wantsEnvelope(raw: string | string[] | undefined): boolean {
  if (raw === undefined) return false;
  if (raw === "1") return true;
  throw new InvalidQueryError("envelope takes the value 1 (or leave it out for plain events)");
}

/** The query parameters of `GET /events`; any other is a 400. */
export const EVENTS_QUERY = ["topic", "lastEventId", "authorization", "envelope"] as const;

/** `GET /events` streams topics; `POST /events` publishes. */
export async function eventsRoutes(app: FastifyInstance, options: EventsRoutesOptions): Promise<void> {
  const { hub, streams, publisher, subscriber, expiry } = options;
  app.decorateRequest("publisher", undefined);

  app.get<{
    Querystring: {
      topic?: string | string[];
      lastEventId?: string | string[];
      authorization?: string | string[];
      envelope?: string | string[];
    };
  }>(
    "/events",
    // A HEAD would open a stream that never ends.
    { exposeHeadRoute: false },
    async (request, reply) => {
      rejectUnknownQuery("GET /events", request.query, EVENTS_QUERY);
      const topics = parseTopicSelection(request.query.topic, options.maxTopicsPerStream);
      const lastEventId = resumeId(request.headers["last-event-id"], request.query.lastEventId);
      const envelope = wantsEnvelope(request.query.envelope);
      // No token is fine (public events only); a bad one is a 401 before the stream opens.
      const token = subscriber && subscriberToken(request);
      const claims = token ? await subscriber?.verify(token) : undefined;
      const stream = streams.open(reply);
      if (claims?.expiresAt !== undefined) expiry.track(stream, claims.expiresAt);
      await hub.subscribe(stream, topics, lastEventId, claims?.grant, envelope);
    },
  );

  app.post<{ Body: PublishBody }>(
    "/events",
    {
      schema: publishSchema,
      schemaErrorFormatter: bodyError,
      ...(publisher && {
        onRequest: async (request: FastifyRequest) => {
          const token = bearerToken(request);
          if (token === undefined) throw new TokenMissingError("Publishing (PUBLISHER_JWT_KEY is set)");
          request.publisher = await publisher.verify(token);
        },
      }),
      // After the token check, so the key is a verified subject; before the body is read.
      ...(options.publishRateLimit > 0 && {
        config: {
          rateLimit: {
            max: options.publishRateLimit,
            timeWindow: 60_000,
            hook: "preParsing" as const,
            keyGenerator: publisherKey,
            errorResponseBuilder: (_request: FastifyRequest, context: { max: number; after: string }) =>
              new RateLimitedError(context.max, context.after),
          },
        },
      }),
      preValidation: async (request) => {
        // Form fields are all text: let `retry=5000` and `private=true` count as what they spell.
        const body = request.body as unknown as Record<string, unknown> | undefined;
        const isForm = request.headers["content-type"]?.toLowerCase().startsWith("application/x-www-form-urlencoded");
        if (isForm) rejectRepeatedFields(body);
        if (typeof body?.topic === "string" && !isValidTopic(body.topic)) {
          throw new InvalidTopicError(JSON.stringify(body.topic.slice(0, 300)));
        }
        if (isForm && typeof body?.retry === "string") {
          if (/^\d{1,10}$/.test(body.retry)) body.retry = Number(body.retry);
        }
        if (isForm && (body?.private === "true" || body?.private === "false")) body.private = body.private === "true";
      },
    },
    async (request, reply) => {
      const input = toEventInput(request.body);
      if (request.publisher !== undefined && !request.publisher.grant.covers(input.topic)) {
        throw new TopicForbiddenError("mercure.publish", JSON.stringify(input.topic));
      }
      if (input.private && subscriber === undefined) throw new PrivateUnavailableError();
      const { event, duplicate } = await hub.publish(input);
      reply.code(201);
      return publishAnswer(event, duplicate);
    },
  );
}

/** What a publish answers, over HTTP (`201`) and in process: the stored event's id, topic and time. */
export interface PublishAnswer {
  id: string;
  topic: string;
  event?: string;
  private?: true;
  time: string;
  duplicate?: true;
}

/** The answer to a publish of `event`, `duplicate` when it was already in history. */
export function publishAnswer(event: StoredEvent, duplicate: boolean): PublishAnswer {
  return {
    id: event.id,
    topic: event.topic,
    ...(event.event !== undefined && { event: event.event }),
    ...(event.private && { private: true }),
    time: new Date(event.time).toISOString(),
    ...(duplicate && { duplicate: true }),
  };
}
