import type { FastifyInstance, FastifyRequest, FastifySchemaValidationError } from "fastify";
import type { JwtVerifier, TokenClaims } from "../auth/jwt-verifier.js";
import { bearerToken, subscriberToken } from "../auth/request-token.js";
import type { TokenExpiry } from "../auth/token-expiry.js";
import type { EventInput, StoredEvent } from "../broker/broker.js";
import {
  InvalidEventError,
  InvalidQueryError,
  InvalidTopicError,
  itemError,
  PrivateUnavailableError,
  TokenMissingError,
  TopicForbiddenError,
} from "../errors.js";
import type { Hub } from "../hub/hub.js";
import {
  DEFAULT_TOPIC,
  describeBadTopic,
  eventTopics,
  isValidTopic,
  parseTopicSelection,
  TOPIC_PATTERN,
} from "../hub/topic.js";
import type { StreamRegistry } from "../sse/stream-registry.js";
import {
  checkPublishTopics,
  FIELD_PATTERN,
  FIELD_RULES,
  ID_PATTERN,
  LONE_SURROGATE,
  publishRateLimit,
} from "./publish-rules.js";
import { rejectUnknownQuery } from "./query.js";
import { resumeId } from "./resume-id.js";

/** The most topics one publish may carry, as in Mercure. */
const MAX_PUBLISH_TOPICS = 1_000;

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
  /** False: a stream needs a valid subscriber token (`ANONYMOUS_SUBSCRIBERS`). */
  anonymousSubscribers?: boolean;
  /** The most events one batch may hold (`MAX_BATCH_EVENTS`). */
  maxBatchEvents: number;
}

declare module "fastify" {
  interface FastifyRequest {
    /** The verified publisher token of a `POST /events`, when `PUBLISHER_JWT_KEY` is set. */
    publisher: TokenClaims | undefined;
  }
}

/** A publish body after schema validation (JSON, or a form with its text fields converted). */
export interface PublishBody {
  /** One topic, or several: the first is canonical, the others alternates. */
  topic?: string | string[];
  event?: string;
  data: unknown;
  id?: string;
  retry?: number;
  private?: boolean;
}

/** The schema of one event of a publish, shared by the route and the in-process `publish`. */
export const eventSchema = {
  type: "object",
  required: ["data"],
  additionalProperties: false,
  properties: {
    topic: {
      anyOf: [
        { type: "string", pattern: TOPIC_PATTERN },
        {
          type: "array",
          minItems: 1,
          maxItems: MAX_PUBLISH_TOPICS,
          items: { type: "string", pattern: TOPIC_PATTERN },
        },
      ],
    },
    event: { type: "string", pattern: FIELD_PATTERN },
    id: { type: "string", pattern: ID_PATTERN },
    retry: { type: "integer", minimum: 0, maximum: 2_147_483_647 },
    private: { type: "boolean" },
    data: {},
  },
} as const;

/** The schema of a `POST /events` body: one event, or a batch of 1 to `maxBatchEvents` events. */
function publishSchema(maxBatchEvents: number) {
  return {
    body: {
      anyOf: [eventSchema, { type: "array", minItems: 1, maxItems: maxBatchEvents, items: eventSchema }],
    },
  };
}

/**
 * The error of a `POST /events` body, one event or a batch: the first violation of the branch
 * that fits the body's shape (object or array), naming the batch item it is in.
 */
function publishBodyError(maxBatchEvents: number) {
  return (errors: FastifySchemaValidationError[]): Error => {
    const first = errors.find((e) => e.keyword !== "anyOf" && !(e.instancePath === "" && e.keyword === "type"));
    if (first === undefined) {
      return new InvalidEventError(
        'The body must be a JSON object such as {"topic":"news","data":"hello"}, or an array of such objects (a batch)',
      );
    }
    if (first.instancePath === "" && (first.keyword === "minItems" || first.keyword === "maxItems")) {
      return batchSizeError(maxBatchEvents);
    }
    const item = /^\/(\d+)(\/.*)?$/.exec(first.instancePath);
    if (item === null) return bodyError([first]);
    if (item[2] === undefined && first.keyword === "type") {
      return itemError(
        new InvalidEventError('Each event of a batch is a JSON object such as {"topic":"news","data":"hello"}'),
        Number(item[1]),
      );
    }
    return itemError(bodyError([{ ...first, instancePath: item[2] ?? "" }]), Number(item[1]));
  };
}

/** A batch of no event, or of more than `MAX_BATCH_EVENTS`. */
export function batchSizeError(maxBatchEvents: number): Error {
  return new InvalidEventError(
    `A batch holds 1 to ${maxBatchEvents} events (MAX_BATCH_EVENTS): send a non-empty array, split a larger one`,
  );
}

/** Turns the first schema violation of one event into an error that says which field is wrong and what it takes. */
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

/** The error for an event body's first invalid topic, if it has one; other faults are the schema's. */
function badTopicError(item: unknown): Error | undefined {
  const topic = (item as Record<string, unknown> | null | undefined)?.topic;
  if (typeof topic === "string")
    return isValidTopic(topic) ? undefined : new InvalidTopicError(describeBadTopic(topic));
  if (!Array.isArray(topic)) return undefined;
  const bad = topic.find((one) => typeof one === "string" && !isValidTopic(one));
  return bad === undefined ? undefined : new InvalidTopicError(describeBadTopic(bad));
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

/**
 * Validated bodies as the broker takes them, each also passed to `check`; in a `batch`, an error
 * names the item it is about.
 */
export function toEventInputs(
  bodies: readonly PublishBody[],
  batch: boolean,
  check: (input: EventInput) => void,
): EventInput[] {
  return bodies.map((body, index) => {
    try {
      const input = toEventInput(body);
      check(input);
      return input;
    } catch (err) {
      throw batch ? itemError(err as Error, index) : err;
    }
  });
}

/** A validated body as the broker takes it. */
function toEventInput(body: PublishBody): EventInput {
  const topics =
    body.topic === undefined ? [DEFAULT_TOPIC] : typeof body.topic === "string" ? [body.topic] : body.topic;
  checkPublishTopics(topics);
  // Every field named, absent ones undefined: one object shape for every event is what keeps a
  // batch of thousands cheap (conditional spreads make a new shape per combination of fields).
  return {
    topic: topics[0] as string,
    alternates: topics.length > 1 ? topics.slice(1) : undefined,
    data: encodeData(body.data),
    event: body.event,
    id: body.id,
    retry: body.retry,
    private: body.private === true ? true : undefined,
  };
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
      if (options.anonymousSubscribers === false && claims === undefined) {
        throw new TokenMissingError("Streaming (ANONYMOUS_SUBSCRIBERS=false)");
      }
      const stream = streams.open(reply);
      if (claims?.expiresAt !== undefined) expiry.track(stream, claims.expiresAt);
      await hub.subscribe(stream, topics, lastEventId, claims?.grant, envelope);
    },
  );

  app.post<{ Body: PublishBody | PublishBody[] }>(
    "/events",
    {
      schema: publishSchema(options.maxBatchEvents),
      schemaErrorFormatter: publishBodyError(options.maxBatchEvents),
      ...(publisher && {
        onRequest: async (request: FastifyRequest) => {
          const token = bearerToken(request);
          if (token === undefined) throw new TokenMissingError("Publishing (PUBLISHER_JWT_KEY is set)");
          request.publisher = await publisher.verify(token);
        },
      }),
      // After the token check, so the key is a verified subject; before the body is read.
      ...(options.publishRateLimit > 0 && {
        config: publishRateLimit(options.publishRateLimit, (request) => request.publisher),
      }),
      preValidation: async (request) => {
        // Form fields are all text: let `retry=5000` and `private=true` count as what they spell.
        const body = request.body as unknown as Record<string, unknown> | undefined;
        const isForm = request.headers["content-type"]?.toLowerCase().startsWith("application/x-www-form-urlencoded");
        if (isForm) rejectRepeatedFields(body);
        // Before the schema, which could only say "invalid topic", not which one and why.
        if (Array.isArray(body)) {
          for (let index = 0; index < body.length; index++) {
            const err = badTopicError(body[index]);
            if (err !== undefined) throw itemError(err, index);
          }
        } else {
          const err = badTopicError(body);
          if (err !== undefined) throw err;
        }
        if (isForm && typeof body?.retry === "string") {
          if (/^\d{1,10}$/.test(body.retry)) body.retry = Number(body.retry);
        }
        if (isForm && (body?.private === "true" || body?.private === "false")) body.private = body.private === "true";
      },
    },
    async (request, reply) => {
      const batch = Array.isArray(request.body);
      const bodies = Array.isArray(request.body) ? request.body : [request.body];
      const inputs = toEventInputs(bodies, batch, (input) => {
        const uncovered =
          request.publisher && eventTopics(input).find((topic) => !request.publisher?.grant.covers(topic));
        if (uncovered !== undefined) throw new TopicForbiddenError("mercure.publish", describeBadTopic(uncovered));
        if (input.private && subscriber === undefined) throw new PrivateUnavailableError();
      });
      reply.code(201);
      if (!batch) {
        const { event, duplicate } = await hub.publish(inputs[0] as EventInput);
        return publishAnswer(event, duplicate);
      }
      const results = await hub.publishBatch(inputs);
      return results.map(({ event, duplicate }) => publishAnswer(event, duplicate));
    },
  );
}

/** What a publish answers, over HTTP (`201`) and in process: the stored event's id, topics and time. */
export interface PublishAnswer {
  id: string;
  topic: string;
  event?: string;
  alternates?: readonly string[];
  private?: true;
  time: string;
  duplicate?: true;
}

/** The last acceptance time formatted, and its text: the events of a batch mostly share one millisecond. */
let lastTime = Number.NaN;
let lastIso = "";
function isoTime(time: number): string {
  if (time !== lastTime) {
    lastTime = time;
    lastIso = new Date(time).toISOString();
  }
  return lastIso;
}

/** The answer to a publish of `event`, `duplicate` when it was already in history. */
export function publishAnswer(event: StoredEvent, duplicate: boolean): PublishAnswer {
  // Fields added one by one, only when present (an in-process caller may test `"duplicate" in`):
  // a literal with conditional spreads costs microseconds per answer, thousands in a batch.
  // In the order JSON answers have always had: id, topic, event, alternates, private, time, duplicate.
  const answer = { id: event.id, topic: event.topic } as PublishAnswer;
  if (event.event !== undefined) answer.event = event.event;
  if (event.alternates !== undefined && event.alternates.length > 0) answer.alternates = event.alternates;
  if (event.private) answer.private = true;
  answer.time = isoTime(event.time);
  if (duplicate) answer.duplicate = true;
  return answer;
}
