import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { JwtVerifier } from "../auth/jwt-verifier.js";
import { bearerToken, TOKEN_COOKIE } from "../auth/request-token.js";
import { SubscriptionNotFoundError, TokenMissingError, TopicForbiddenError } from "../errors.js";
import { singleQueryValue } from "../query-value.js";
import {
  goJson,
  type Presence,
  queryUnescape,
  SUBSCRIPTION_CONTEXT,
  SUBSCRIPTIONS_PATH,
  subscriptionDocument,
} from "./presence.js";

/** The cookie Mercure's clients set for `EventSource`. */
const MERCURE_COOKIE = "mercureAuthorization";
const JSON_LD = "application/ld+json";
/** A last event id that can go into an ETag as it is: visible ASCII, no `"`. */
const PLAIN_ETAG = /^[\x21\x23-\x7e]+$/;

/** Options for `subscriptionsRoutes`. */
export interface SubscriptionsRoutesOptions {
  presence: Presence;
  /** Checks subscribers' tokens: the API is read with a token whose `mercure.subscribe` covers the request's URL. */
  subscriber: JwtVerifier;
  /** The id of the newest event in the whole history (on every node), `earliest` when there is none. */
  lastEventId: () => Promise<string>;
  /**
   * Where a request's token comes from. By default, as v0.24.2 reads it: `Authorization: Bearer`,
   * else the `authorization` query parameter, else the `mercureAuthorization` cookie (or Herald's
   * `herald_token`).
   */
  token?: (request: FastifyRequest) => string | undefined;
}

function defaultToken(request: FastifyRequest): string | undefined {
  const header = bearerToken(request);
  if (header !== undefined) return header;
  const query = singleQueryValue(
    "authorization",
    (request.query as { authorization?: string | string[] }).authorization,
  );
  if (query) return query;
  const cookie = request.headers.cookie;
  if (cookie === undefined || typeof request.server.parseCookie !== "function") return undefined;
  const cookies = request.server.parseCookie(cookie);
  return cookies[MERCURE_COOKIE] || cookies[TOKEN_COOKIE] || undefined;
}

/** The path segments after `/.well-known/mercure/subscriptions`, still escaped; `undefined` when the path has another shape. */
function pathSegments(url: string): string[] | undefined {
  const query = url.indexOf("?");
  const rest = (query === -1 ? url : url.slice(0, query)).slice(SUBSCRIPTIONS_PATH.length);
  if (rest === "") return [];
  const segments = rest.slice(1).split("/");
  return segments.length <= 2 && segments.every((s) => s !== "") ? segments : undefined;
}

/** `If-None-Match` as v0.24.2 compares it (the bare id), or the same id as an entity tag. */
function notModified(ifNoneMatch: string | undefined, etag: string): boolean {
  return ifNoneMatch !== undefined && [etag, `"${etag}"`, `W/"${etag}"`].includes(ifNoneMatch.trim());
}

/**
 * Mercure's subscriptions API (`SUBSCRIPTIONS=true`): `GET /.well-known/mercure/subscriptions`,
 * `…/{topic}` and `…/{topic}/{subscriber}` (each part escaped as `queryEscape` does), in the
 * JSON-LD shapes of the Mercure hub v0.24.2, with the hub's last event id as `lastEventID` and as
 * the `ETag` (`If-None-Match` → 304). The token's `mercure.subscribe` must cover the request's URL
 * (path and query), as in v0.24.2.
 */
export async function subscriptionsRoutes(app: FastifyInstance, options: SubscriptionsRoutesOptions): Promise<void> {
  const { presence, subscriber, lastEventId } = options;
  const tokenOf = options.token ?? defaultToken;

  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const segments = pathSegments(request.url);
    if (segments === undefined) return reply.callNotFound();
    const token = tokenOf(request);
    if (token === undefined) throw new TokenMissingError(`GET ${SUBSCRIPTIONS_PATH}`);
    const claims = await subscriber.verify(token);
    if (!claims.grant.covers(request.url)) {
      throw new TopicForbiddenError("mercure.subscribe", JSON.stringify(request.url));
    }
    // Read before the list: a change after this id is announced after it, so a client that
    // resumes from it gets every change the list missed.
    const lastEventID = await lastEventId();
    const etag = PLAIN_ETAG.test(lastEventID) ? lastEventID : encodeURIComponent(lastEventID);
    reply.header("etag", etag);
    if (notModified(request.headers["if-none-match"], etag)) return reply.code(304).send();
    // A Buffer, so Fastify sends the type as v0.24.2 does, without "; charset=utf-8".
    reply.header("content-type", JSON_LD);

    const [rawTopic, rawSubscriber] = segments;
    const topic = rawTopic === undefined ? undefined : queryUnescape(rawTopic);
    if (rawSubscriber === undefined) {
      const subscriptions = await presence.list(topic === undefined ? {} : { topic });
      return Buffer.from(
        goJson({
          "@context": SUBSCRIPTION_CONTEXT,
          id: request.url,
          type: "Subscriptions",
          lastEventID,
          subscriptions,
        }),
      );
    }
    const id = queryUnescape(rawSubscriber);
    const [found] = await presence.list({ topic, subscriber: id });
    if (found === undefined) throw new SubscriptionNotFoundError(JSON.stringify(id), JSON.stringify(topic));
    const { payload, ...document } = subscriptionDocument(
      { subscriber: found.subscriber, topics: [found.topic], payload: found.payload },
      found.topic,
      true,
      SUBSCRIPTION_CONTEXT,
    );
    return Buffer.from(goJson({ ...document, lastEventID, ...(payload !== undefined && { payload }) }));
  };

  app.get(SUBSCRIPTIONS_PATH, handler);
  app.get(`${SUBSCRIPTIONS_PATH}/*`, handler);
}
