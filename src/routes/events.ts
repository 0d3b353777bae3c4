import type { FastifyInstance, FastifySchemaValidationError } from "fastify";
import type { EventInput } from "../broker/broker.js";
import { InvalidEventError, InvalidTopicError } from "../errors.js";
import type { Hub } from "../hub/hub.js";
import { DEFAULT_TOPIC, parseTopicSelection, TOPIC_PATTERN } from "../hub/topic.js";
import type { StreamRegistry } from "../sse/stream-registry.js";
import { resumeId } from "./resume-id.js";

/** Options for the events routes. */
export interface EventsRoutesOptions {
  hub: Hub;
  streams: StreamRegistry;
}

/** No CR, LF or NUL: these would end an SSE field early (header injection on the wire). */
const FIELD_PATTERN = "^[^\\r\\n\\u0000]{1,256}$";
/** A publisher's id: a field value, but not `<digits>-<digits>`, the form of ids Herald assigns itself (Redis stream ids). */
const ID_PATTERN = "^(?![0-9]+-[0-9]+$)[^\\r\\n\\u0000]{1,256}$";

interface PublishBody {
  topic?: string;
  event?: string;
  data: unknown;
  id?: string;
  retry?: number;
}

const publishSchema = {
  body: {
    type: "object",
    required: ["data"],
    additionalProperties: false,
    properties: {
      topic: { type: "string", pattern: TOPIC_PATTERN },
      event: { type: "string", pattern: FIELD_PATTERN },
      id: { type: "string", pattern: ID_PATTERN },
      retry: { type: "integer", minimum: 0, maximum: 2_147_483_647 },
      data: {},
    },
  },
} as const;

const FIELD_RULES: Record<string, string> = {
  event: "event must be 1 to 256 characters with no CR, LF or NUL",
  id: "id must be 1 to 256 characters with no CR, LF or NUL, and not of the form <digits>-<digits>, which Herald keeps for the ids it assigns",
  retry: "retry must be a whole number of milliseconds from 0 to 2147483647",
};

/** Turns the first schema violation into an error that says which field is wrong and what it takes. */
function bodyError(errors: FastifySchemaValidationError[]): Error {
  const first = errors[0];
  const params = first?.params as Record<string, unknown> | undefined;
  if (first?.keyword === "required") {
    return new InvalidEventError(
      `${String(params?.missingProperty)} is required: send it as JSON {"data": ...} or as a form field data=...`,
    );
  }
  if (first?.keyword === "additionalProperties") {
    return new InvalidEventError(
      `Unknown field ${JSON.stringify(params?.additionalProperty)}: an event has topic, event, data, id and retry`,
    );
  }
  const field = first?.instancePath.split("/")[1] ?? "";
  if (field === "topic") return new InvalidTopicError("in the body");
  const rule = FIELD_RULES[field];
  if (rule !== undefined) return new InvalidEventError(rule);
  return new InvalidEventError('The body must be a JSON object such as {"topic":"news","data":"hello"}');
}

/** JSON strings are sent as their text; any other JSON value as its JSON encoding. */
function encodeData(data: unknown): string {
  if (typeof data === "string") return data;
  try {
    return JSON.stringify(data);
  } catch (err) {
    // JSON.parse takes any depth; JSON.stringify recurses and runs out of stack on thousands of levels.
    throw new InvalidEventError("data is nested too deeply: keep it under a few hundred levels", { cause: err });
  }
}

function toEventInput(body: PublishBody): EventInput {
  return {
    topic: body.topic ?? DEFAULT_TOPIC,
    data: encodeData(body.data),
    ...(body.event !== undefined && { event: body.event }),
    ...(body.id !== undefined && { id: body.id }),
    ...(body.retry !== undefined && { retry: body.retry }),
  };
}

/** `GET /events` streams topics; `POST /events` publishes. */
export async function eventsRoutes(app: FastifyInstance, { hub, streams }: EventsRoutesOptions): Promise<void> {
  app.get<{ Querystring: { topic?: string | string[]; lastEventId?: string | string[] } }>(
    "/events",
    // A HEAD would open a stream that never ends.
    { exposeHeadRoute: false },
    async (request, reply) => {
      const topics = parseTopicSelection(request.query.topic);
      const lastEventId = resumeId(request.headers["last-event-id"], request.query.lastEventId);
      const stream = streams.open(reply);
      await hub.subscribe(stream, topics, lastEventId);
    },
  );

  app.post<{ Body: PublishBody }>(
    "/events",
    {
      schema: publishSchema,
      schemaErrorFormatter: bodyError,
      preValidation: async (request) => {
        // Form fields are all text: let `retry=5000` count as the number it spells.
        const body = request.body as unknown as Record<string, unknown> | undefined;
        const isForm = request.headers["content-type"]?.toLowerCase().startsWith("application/x-www-form-urlencoded");
        if (isForm && typeof body?.retry === "string") {
          if (/^\d{1,10}$/.test(body.retry)) body.retry = Number(body.retry);
        }
      },
    },
    async (request, reply) => {
      const { event, duplicate } = await hub.publish(toEventInput(request.body));
      reply.code(201);
      return {
        id: event.id,
        topic: event.topic,
        ...(event.event !== undefined && { event: event.event }),
        time: new Date(event.time).toISOString(),
        ...(duplicate && { duplicate: true }),
      };
    },
  );
}
