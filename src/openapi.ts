import { readFileSync } from "node:fs";
import swagger from "@fastify/swagger";
import type { FastifyInstance } from "fastify";

const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
  version: string;
};

/** Fastify's error shape, which every Herald error answers with. */
const ERROR_SCHEMA: Record<string, unknown> = {
  type: "object",
  required: ["statusCode", "code", "error", "message"],
  properties: {
    statusCode: { type: "integer" },
    code: { type: "string", description: "A `HERALD_*` code (README, Errors)." },
    error: { type: "string" },
    message: { type: "string", description: "What to change, in words a curl user can act on." },
    id: {
      type: "string",
      description:
        "With `HERALD_PUBLISH_OUTCOME_UNKNOWN` for one event only: the id to retry the publish with, so that it is stored once.",
    },
    ids: {
      type: "array",
      items: { type: "string" },
      description:
        "With `HERALD_PUBLISH_OUTCOME_UNKNOWN` for a batch only: the ids to retry its events with, in order, so that each is stored once.",
    },
  },
};

/** What a publish answers for one event. */
const PUBLISH_RESULT = {
  type: "object",
  required: ["id", "topic", "time"],
  properties: {
    id: { type: "string" },
    topic: { type: "string" },
    event: { type: "string" },
    alternates: { type: "array", items: { type: "string" } },
    private: { type: "boolean" },
    time: { type: "string", format: "date-time" },
    duplicate: { type: "boolean" },
  },
};

const STREAM = {
  description: "A `text/event-stream` that stays open: a `retry:` line, then events (and `:` heartbeats).",
  content: { "text/event-stream": { schema: { type: "string" } } },
};

const TOKEN_QUERY = {
  authorization: { type: "string", description: "A subscriber JWT, for clients that cannot send headers." },
};
const RESUME_QUERY = {
  lastEventId: {
    type: "string",
    description: "The id to resume after, when the `Last-Event-ID` header cannot be sent. The header wins.",
  },
};

/** What one route's OpenAPI entry adds to its Fastify schema: words, parameters and answers. */
interface RouteDoc {
  summary: string;
  description?: string;
  querystring?: Record<string, unknown>;
  /** Status → description or a full response object. */
  responses: Record<string, string | Record<string, unknown>>;
  /** The `HERALD_*` codes this route may answer, by status. */
  errors: Record<string, string[]>;
}

/**
 * Each route of Herald's, by `METHOD path` (without the prefix). A test checks that every route
 * the app has is here, so a new route cannot go undocumented.
 */
export const ROUTE_DOCS: Record<string, RouteDoc> = {
  "GET /events": {
    summary: "Stream events of one or more topics",
    description:
      "Opens a Server-Sent Events stream. With `Last-Event-ID` (header or `lastEventId`), first sends every retained event after it, or a `reset` event when that id has left history.",
    querystring: {
      topic: {
        description: "A topic to follow; repeat for several. `*` follows every topic. Default `default`.",
        oneOf: [{ type: "string" }, { type: "array", items: { type: "string" } }],
      },
      ...RESUME_QUERY,
      ...TOKEN_QUERY,
      envelope: { type: "string", enum: ["1"], description: "`1`: each event's topic, name and time in its data." },
    },
    responses: { 200: STREAM },
    errors: {
      400: ["HERALD_INVALID_TOPIC", "HERALD_INVALID_QUERY", "HERALD_TOO_MANY_TOPICS"],
      401: ["HERALD_TOKEN_INVALID", "HERALD_TOKEN_EXPIRED"],
      429: ["HERALD_IP_CONNECTION_LIMIT"],
      503: ["HERALD_CONNECTION_LIMIT"],
    },
  },
  "POST /events": {
    summary: "Publish an event, or a batch of events",
    description:
      "JSON or a form. Herald assigns an ordered id unless one is given; the same id with the same content is an idempotent retry (`duplicate: true`). A JSON array of 1 to `MAX_BATCH_EVENTS` events is a batch: all are stored, adjacent and in order, or none is (an error names the item, `item <index>: ...`), and the answer is an array of results in the same order.",
    responses: {
      201: {
        description: "Stored, and on its way to every subscriber: one result, or one per event of a batch.",
        content: {
          "application/json": {
            schema: { anyOf: [PUBLISH_RESULT, { type: "array", items: PUBLISH_RESULT }] },
          },
        },
      },
    },
    errors: {
      400: ["HERALD_INVALID_JSON", "HERALD_INVALID_EVENT", "HERALD_INVALID_TOPIC", "HERALD_PRIVATE_UNAVAILABLE"],
      401: ["HERALD_TOKEN_MISSING", "HERALD_TOKEN_INVALID", "HERALD_TOKEN_EXPIRED"],
      403: ["HERALD_TOPIC_FORBIDDEN"],
      409: ["HERALD_ID_CONFLICT", "HERALD_ID_RETIRED"],
      413: ["HERALD_BODY_TOO_LARGE", "HERALD_EVENT_TOO_LARGE"],
      415: ["HERALD_UNSUPPORTED_MEDIA_TYPE"],
      429: ["HERALD_RATE_LIMITED"],
      503: ["HERALD_BROKER_UNAVAILABLE", "HERALD_PUBLISH_OUTCOME_UNKNOWN"],
    },
  },
  "GET /ticks": {
    summary: "A clock for this connection",
    description: "One `tick` event per interval, numbered; its timer is freed when the client goes away.",
    querystring: {
      interval: { type: "string", pattern: "^[0-9]+$", description: "Milliseconds between ticks, 100 to 60000." },
      ...RESUME_QUERY,
    },
    responses: { 200: STREAM },
    errors: { 400: ["HERALD_INVALID_QUERY"], 429: ["HERALD_IP_CONNECTION_LIMIT"], 503: ["HERALD_CONNECTION_LIMIT"] },
  },
  "GET /stats": {
    summary: "What the service is doing now",
    querystring: TOKEN_QUERY,
    responses: {
      200: {
        description: "Counters and gauges.",
        content: { "application/json": { schema: { type: "object", additionalProperties: true } } },
      },
    },
    errors: {
      401: ["HERALD_TOKEN_MISSING", "HERALD_TOKEN_INVALID", "HERALD_TOKEN_EXPIRED"],
      403: ["HERALD_TOPIC_FORBIDDEN"],
    },
  },
  "GET /stats/stream": {
    summary: "The /stats figures as a stream, once a second",
    querystring: TOKEN_QUERY,
    responses: { 200: STREAM },
    errors: {
      401: ["HERALD_TOKEN_MISSING", "HERALD_TOKEN_INVALID", "HERALD_TOKEN_EXPIRED"],
      403: ["HERALD_TOPIC_FORBIDDEN"],
      429: ["HERALD_IP_CONNECTION_LIMIT"],
      503: ["HERALD_CONNECTION_LIMIT"],
    },
  },
  "GET /metrics": {
    summary: "Prometheus metrics",
    querystring: TOKEN_QUERY,
    responses: {
      200: { description: "The text exposition format.", content: { "text/plain": { schema: { type: "string" } } } },
    },
    errors: {
      401: ["HERALD_TOKEN_MISSING", "HERALD_TOKEN_INVALID", "HERALD_TOKEN_EXPIRED"],
      403: ["HERALD_TOPIC_FORBIDDEN"],
    },
  },
  "GET /health": {
    summary: "Whether the service can take work",
    responses: {
      200: {
        description: '`{"status":"ok"}`',
        content: { "application/json": { schema: { type: "object", properties: { status: { const: "ok" } } } } },
      },
      503: {
        description: "The broker's storage cannot be reached; `detail` says why.",
        content: {
          "application/json": {
            schema: { type: "object", properties: { status: { const: "unavailable" }, detail: { type: "string" } } },
          },
        },
      },
    },
    errors: {},
  },
  "GET /.well-known/mercure": {
    summary: "Subscribe, as a Mercure hub",
    description:
      "Mercure's subscribe: `topic` repeated (exact topics, `*` or URI templates), replay from `Last-Event-ID` or `lastEventID` (`earliest` for everything retained). See README, Mercure compatibility.",
    querystring: {
      topic: {
        description: "A topic selector; repeat for several (1 to 1000).",
        oneOf: [{ type: "string" }, { type: "array", items: { type: "string" } }],
      },
      lastEventID: { type: "string", description: "The id to resume after, when the header cannot be sent." },
      ...TOKEN_QUERY,
    },
    responses: { 200: STREAM },
    errors: {
      400: ["HERALD_INVALID_TOPIC", "HERALD_INVALID_QUERY"],
      401: ["HERALD_TOKEN_MISSING", "HERALD_TOKEN_INVALID", "HERALD_TOKEN_EXPIRED"],
      429: ["HERALD_IP_CONNECTION_LIMIT"],
      503: ["HERALD_CONNECTION_LIMIT", "HERALD_BROKER_UNAVAILABLE"],
    },
  },
  "POST /.well-known/mercure": {
    summary: "Publish an update, as a Mercure hub",
    description: "A form: `topic` (repeated), `data`, `private`, `id`, `type`, `retry`. Answers the id as text/plain.",
    responses: { 200: { description: "The update's id.", content: { "text/plain": { schema: { type: "string" } } } } },
    errors: {
      400: ["HERALD_INVALID_EVENT", "HERALD_INVALID_TOPIC", "HERALD_PRIVATE_UNAVAILABLE"],
      401: ["HERALD_TOKEN_MISSING", "HERALD_TOKEN_INVALID", "HERALD_TOKEN_EXPIRED"],
      403: ["HERALD_TOPIC_FORBIDDEN", "HERALD_TOPIC_RESERVED", "HERALD_PUBLISH_ORIGIN"],
      413: ["HERALD_BODY_TOO_LARGE", "HERALD_EVENT_TOO_LARGE"],
      415: ["HERALD_UNSUPPORTED_MEDIA_TYPE"],
      429: ["HERALD_RATE_LIMITED"],
      503: ["HERALD_BROKER_UNAVAILABLE", "HERALD_PUBLISH_OUTCOME_UNKNOWN"],
    },
  },
  "GET /.well-known/mercure/subscriptions": {
    summary: "Active subscriptions (SUBSCRIPTIONS=true)",
    description:
      "JSON-LD as Mercure v0.24.2 returns it; also `/subscriptions/{topic}` and `/subscriptions/{topic}/{subscriber}` (URL-encoded). `ETag`/`If-None-Match`.",
    querystring: TOKEN_QUERY,
    responses: {
      200: { description: "The list.", content: { "application/ld+json": { schema: { type: "object" } } } },
    },
    errors: {
      401: ["HERALD_TOKEN_MISSING", "HERALD_TOKEN_INVALID", "HERALD_TOKEN_EXPIRED"],
      403: ["HERALD_TOPIC_FORBIDDEN"],
      404: ["HERALD_SUBSCRIPTION_NOT_FOUND"],
    },
  },
  "GET /.well-known/mercure/subscriptions/*": {
    summary: "Active subscriptions of one topic selector, or one subscription (SUBSCRIPTIONS=true)",
    responses: {
      200: {
        description: "The list or the subscription.",
        content: { "application/ld+json": { schema: { type: "object" } } },
      },
    },
    errors: {
      401: ["HERALD_TOKEN_MISSING", "HERALD_TOKEN_INVALID", "HERALD_TOKEN_EXPIRED"],
      403: ["HERALD_TOPIC_FORBIDDEN"],
      404: ["HERALD_SUBSCRIPTION_NOT_FOUND"],
    },
  },
  "GET /openapi.json": {
    summary: "This document",
    responses: {
      200: { description: "OpenAPI 3.1.", content: { "application/json": { schema: { type: "object" } } } },
    },
    errors: {},
  },
};

/** Every route answers 404 `HERALD_NOT_FOUND` for paths it does not have; listed once, on the document's info. */
function errorResponses(errors: Record<string, string[]>) {
  const responses: Record<string, unknown> = {};
  for (const [status, codes] of Object.entries(errors)) {
    responses[status] = {
      description: `Codes: ${codes.map((c) => `\`${c}\``).join(", ")}.`,
      content: { "application/json": { schema: { $ref: "#/components/schemas/HeraldError" } } },
      "x-herald-codes": codes,
    };
  }
  return responses;
}

function querystringParameters(query: Record<string, unknown>) {
  return Object.entries(query).map(([name, schema]) => {
    const { description, ...rest } = schema as { description?: string };
    return { in: "query", name, required: false, description, schema: rest };
  });
}

/**
 * Registers `@fastify/swagger` on Herald's encapsulated context and serves `GET /openapi.json`:
 * an OpenAPI 3.1 document of every route of Herald's, with the publish body from the route's own
 * schema and the rest from `ROUTE_DOCS`. Routes of the host app are not in it.
 */
export async function openapiRoutes(app: FastifyInstance, prefix: string): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "Herald",
        version,
        description:
          "Server-Sent Events push service. Every error answers with the `HeraldError` shape; an unknown path answers 404 `HERALD_NOT_FOUND`.",
      },
      components: { schemas: { HeraldError: ERROR_SCHEMA } },
    },
    transformObject: (documentObject) => {
      const spec = (documentObject as { openapiObject: Record<string, unknown> }).openapiObject;
      const paths = (spec.paths ?? {}) as Record<string, Record<string, Record<string, unknown>>>;
      for (const [url, operations] of Object.entries(paths)) {
        for (const [method, operation] of Object.entries(operations)) {
          const doc = url.startsWith(prefix)
            ? ROUTE_DOCS[`${method.toUpperCase()} ${url.slice(prefix.length)}`]
            : undefined;
          if (doc === undefined) continue;
          operation.summary = doc.summary;
          if (doc.description !== undefined) operation.description = doc.description;
          if (doc.querystring !== undefined) operation.parameters = querystringParameters(doc.querystring);
          const described = Object.fromEntries(
            Object.entries(doc.responses).map(([status, r]) => [
              status,
              typeof r === "string" ? { description: r } : r,
            ]),
          );
          operation.responses = { ...described, ...errorResponses(doc.errors) };
        }
      }
      return spec;
    },
  });
  app.get("/openapi.json", async () => app.swagger());
}
