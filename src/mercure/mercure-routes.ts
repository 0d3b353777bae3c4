import { randomUUID } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { JwtVerifier, TokenClaims } from "../auth/jwt-verifier.js";
import type { TokenExpiry } from "../auth/token-expiry.js";
import type { EventInput, PublishResult } from "../broker/broker.js";
import {
  InvalidEventError,
  InvalidQueryError,
  PrivateUnavailableError,
  TokenMissingError,
  TooManyTopicsError,
  TopicForbiddenError,
  UnsupportedMediaTypeError,
} from "../errors.js";
import type { Hub } from "../hub/hub.js";
import { describeBadTopic, parseSelectors } from "../hub/topic.js";
import {
  checkPublishTopics,
  FIELD_PATTERN,
  FIELD_RULES,
  ID_PATTERN,
  LONE_SURROGATE,
  MAX_RETRY_MS,
  publishRateLimit,
} from "../routes/publish-rules.js";
import { resumeId } from "../routes/resume-id.js";
import type { StreamRegistry } from "../sse/stream-registry.js";
import { checkPublishOrigin, mercureToken } from "./mercure-token.js";

/** Where a Mercure hub lives, by the protocol's discovery rules. */
export const MERCURE_PATH = "/.well-known/mercure";
/** Topic selectors one subscription may give, as in Mercure v0.24.2. */
export const MAX_MERCURE_SELECTORS = 1_000;
/** Topics one update may carry, as in Mercure v0.24.2. */
export const MAX_MERCURE_TOPICS = 1_000;

/** What `onSubscribe` learns of a subscription as it starts. */
export interface MercureSubscriptionInfo {
  /** A new `urn:uuid:` for each subscription, as Mercure names subscribers. */
  readonly subscriberId: string;
  /** The topic selectors, as given (`*` included). */
  readonly selectors: readonly string[];
  /** The verified subscriber token's claims, when there was one. */
  readonly claims: TokenClaims | undefined;
  /** The token's `mercure.payload`, when there was one. */
  readonly payload: unknown;
  /** The Last-Event-ID the subscriber resumed from, if any. */
  readonly lastEventId: string | undefined;
}

/** Options for `mercureRoutes`. */
export interface MercureRoutesOptions {
  hub: Hub;
  streams: StreamRegistry;
  /** Checks publishers' tokens; without it anyone may publish. */
  publisher?: JwtVerifier;
  /** Checks subscribers' tokens; without it private updates are refused. */
  subscriber?: JwtVerifier;
  expiry: TokenExpiry;
  /** False: a subscription needs a valid token (`ANONYMOUS_SUBSCRIBERS`). */
  anonymousSubscribers: boolean;
  /** Origins allowed to publish with a cookie-borne token (`PUBLISH_ORIGINS`). */
  publishOrigins: "*" | readonly string[];
  /** Publishes per minute per client; 0 for no limit. */
  publishRateLimit: number;
  /**
   * Told when a subscription has started (its stream is open and it receives updates); the
   * function it returns, if any, is called once when the subscription ends. For the presence
   * (subscriptions) API.
   */
  onSubscribe?: (info: MercureSubscriptionInfo) => (() => void) | undefined;
}

declare module "fastify" {
  interface FastifyRequest {
    /** The verified publisher token of a `POST /.well-known/mercure`, when `PUBLISHER_JWT_KEY` is set. */
    mercurePublisher: TokenClaims | undefined;
  }
}

/** Mercure's subscribe responses are never cached, by any proxy or browser. */
const NO_CACHE = "private, no-cache, no-store, must-revalidate, max-age=0";

type Form = Record<string, string | string[] | undefined>;

function list(value: string | string[] | undefined): string[] {
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

/** One form field, given at most once. */
function single(form: Form, name: string): string | undefined {
  const value = form[name];
  if (Array.isArray(value)) throw new InvalidEventError(`Give the ${name} field once, not ${value.length} times`);
  return value;
}

/** An SSE field of the form (`id`, `type`): absent or empty is none; else it must match `pattern`. */
function fieldValue(form: Form, name: string, pattern: RegExp, rule: string): string | undefined {
  const value = single(form, name);
  if (value === undefined || value === "") return undefined;
  if (!pattern.test(value)) throw new InvalidEventError(rule);
  return value;
}

const ID_RE = new RegExp(ID_PATTERN, "u");
const TYPE_RE = new RegExp(FIELD_PATTERN, "u");
const TYPE_RULE = "type must be 1 to 256 characters with no CR, LF or NUL, in valid Unicode (no lone UTF-16 surrogate)";

/** A Mercure publish form as an event: the first topic canonical, the others alternates. */
function toEventInput(form: Form): EventInput {
  const topics = list(form.topic);
  if (topics.length === 0) {
    throw new InvalidEventError('Missing "topic": send one topic=<IRI> form field or more (the first is canonical)');
  }
  if (topics.length > MAX_MERCURE_TOPICS) {
    throw new InvalidEventError(
      `An update may have at most ${MAX_MERCURE_TOPICS} topics, this one has ${topics.length}`,
    );
  }
  checkPublishTopics(topics);
  const data = single(form, "data") ?? "";
  if (LONE_SURROGATE.test(data)) {
    throw new InvalidEventError("data has a lone UTF-16 surrogate, which cannot be sent as UTF-8: send valid Unicode");
  }
  const id = fieldValue(form, "id", ID_RE, FIELD_RULES.id as string);
  const type = fieldValue(form, "type", TYPE_RE, TYPE_RULE);
  const retryText = single(form, "retry");
  let retry: number | undefined;
  if (retryText !== undefined && retryText !== "") {
    retry = /^\d{1,10}$/.test(retryText) ? Number(retryText) : Number.NaN;
    if (!(retry <= MAX_RETRY_MS)) throw new InvalidEventError(FIELD_RULES.retry as string);
  }
  return {
    topic: topics[0] as string,
    ...(topics.length > 1 && { alternates: topics.slice(1) }),
    data,
    ...(type !== undefined && { event: type }),
    ...(id !== undefined && { id }),
    ...(retry !== undefined && { retry }),
    // Mercure: the field's presence makes the update private, whatever its value ("on", "true"...).
    ...(form.private !== undefined && { private: true }),
  };
}

/**
 * `GET /.well-known/mercure` subscribes and `POST /.well-known/mercure` publishes, as the Mercure
 * protocol (hub v0.24.2) defines them: a protocol adapter over the same hub, streams, tokens and
 * limits as `/events`.
 */
export async function mercureRoutes(app: FastifyInstance, options: MercureRoutesOptions): Promise<void> {
  const { hub, streams, publisher, subscriber, expiry } = options;
  app.decorateRequest("mercurePublisher", undefined);

  app.get<{ Querystring: Form }>(MERCURE_PATH, { exposeHeadRoute: false }, async (request, reply) => {
    const names = list(request.query.topic);
    if (names.length === 0) {
      throw new InvalidQueryError(
        'Missing "topic": give ?topic=<topic or URI template> once or more (?topic=* for every topic)',
      );
    }
    if (names.length > MAX_MERCURE_SELECTORS) throw new TooManyTopicsError(MAX_MERCURE_SELECTORS, names.length);
    const topics = parseSelectors(names);
    const lastEventId = resumeId(request.headers["last-event-id"], request.query.lastEventID, "lastEventID");
    const found = subscriber && mercureToken(request);
    const claims = found ? await subscriber?.verify(found.token) : undefined;
    if (!options.anonymousSubscribers && claims === undefined) {
      throw new TokenMissingError("Subscribing (ANONYMOUS_SUBSCRIBERS=false)");
    }
    reply.header("cache-control", NO_CACHE).header("pragma", "no-cache").header("expires", "0");
    // The hub may keep this opener as long as the stream lives: it must not keep the reply, which
    // the stream lets go once it is open (see src/sse/http1-writer.ts).
    let unopened: FastifyReply | undefined = reply;
    const open = (resumedAfter: string | undefined) => {
      const target = unopened as FastifyReply;
      unopened = undefined;
      // Header values are bytes: an id beyond Latin-1 goes as its UTF-8 bytes, as browsers send Last-Event-ID.
      if (resumedAfter !== undefined) target.header("last-event-id", Buffer.from(resumedAfter).toString("latin1"));
      const stream = streams.open(target);
      if (claims?.expiresAt !== undefined) expiry.track(stream, claims.expiresAt);
      const leave = options.onSubscribe?.({
        subscriberId: `urn:uuid:${randomUUID()}`,
        selectors: [...new Set(names)],
        claims,
        payload: claims?.payload,
        lastEventId,
      });
      if (leave !== undefined) stream.onClose(leave);
      return stream;
    };
    await hub.subscribe(open, topics, lastEventId, claims?.grant);
  });

  app.post<{ Body: Form }>(
    MERCURE_PATH,
    {
      onRequest: async (request: FastifyRequest) => {
        if (publisher === undefined) return;
        const found = mercureToken(request);
        if (found === undefined) throw new TokenMissingError("Publishing (PUBLISHER_JWT_KEY is set)");
        if (found.fromCookie) checkPublishOrigin(request, options.publishOrigins);
        request.mercurePublisher = await publisher.verify(found.token);
      },
      ...(options.publishRateLimit > 0 && {
        config: publishRateLimit(options.publishRateLimit, (request) => request.mercurePublisher),
      }),
    },
    async (request, reply) => {
      const contentType = request.headers["content-type"] ?? "";
      if (!contentType.toLowerCase().startsWith("application/x-www-form-urlencoded")) {
        throw new UnsupportedMediaTypeError(`${contentType || "(none)"} on the Mercure hub (it takes forms only)`);
      }
      const input = toEventInput(request.body ?? {});
      const topics = [input.topic, ...(input.alternates ?? [])];
      const grant = request.mercurePublisher?.grant;
      const uncovered = grant && topics.find((topic) => !grant.covers(topic));
      if (uncovered !== undefined) throw new TopicForbiddenError("mercure.publish", describeBadTopic(uncovered));
      if (input.private && subscriber === undefined) throw new PrivateUnavailableError();
      const { event } = await publishKeepingIdIfFree(hub, input);
      reply.type("text/plain; charset=utf-8");
      return event.id;
    },
  );
}

/**
 * Publishes `input`. Same id and same content is Herald's idempotent retry (the original id back,
 * nothing delivered twice). An id already in history with other content: Mercure lets a hub
 * ignore a publisher's id and assign its own, and Herald does so here (the native API answers
 * 409) — ids stay unique in history, so a Last-Event-ID always names one event.
 */
async function publishKeepingIdIfFree(hub: Hub, input: EventInput): Promise<PublishResult> {
  try {
    return await hub.publish(input);
  } catch (err) {
    if (input.id === undefined || (err as { code?: string }).code !== "HERALD_ID_CONFLICT") throw err;
    const { id: _taken, ...withoutId } = input;
    return hub.publish(withoutId);
  }
}
