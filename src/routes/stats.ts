import type { FastifyInstance, FastifyRequest, RouteShorthandOptions } from "fastify";
import type { JwtVerifier } from "../auth/jwt-verifier.js";
import { subscriberToken } from "../auth/request-token.js";
import { TokenMissingError, TopicForbiddenError } from "../errors.js";
import type { Hub } from "../hub/hub.js";
import type { StreamRegistry } from "../sse/stream-registry.js";
import type { TickCounters } from "./ticks.js";

/** Options for the stats route. */
export interface StatsRoutesOptions {
  hub: Hub;
  streams: StreamRegistry;
  ticks: TickCounters;
  /** When set, `/stats` needs a subscriber token that may read every topic. */
  subscriber?: JwtVerifier;
}

/** What `GET /stats` answers. */
export interface Stats {
  connections: number;
  timers: number;
  topics: Record<string, number>;
  published: number;
  delivered: number;
  replays: number;
  resets: number;
  /** Times the live feed from the broker missed events and this node ended its streams. */
  feedGaps: number;
  closedTooSlow: number;
  bufferedBytes: number;
  uptimeS: number;
}

/** Returns a reader of the `/stats` figures as they are now (it walks every open stream: not for hot paths). */
export function createStatsReader({ hub, streams, ticks }: StatsRoutesOptions): () => Stats {
  const startedAt = Date.now();
  return () => ({
    connections: streams.size,
    timers: ticks.timers,
    topics: hub.topicCounts(),
    ...hub.counters,
    closedTooSlow: streams.closedTooSlow,
    bufferedBytes: streams.bufferedBytes(),
    uptimeS: Math.floor((Date.now() - startedAt) / 1000),
  });
}

/** The `exp` of the token that let a request through `statsAccess`, for streams that must end with it. */
export const statsTokenExpiry = new WeakMap<FastifyRequest, number | undefined>();

/**
 * Route options for a route that names the topics streams listen to (`/stats` and its siblings):
 * with `SUBSCRIBER_JWT_KEY` set, only a subscriber token whose `mercure.subscribe` holds `*` may read it.
 */
export function statsAccess(subscriber: JwtVerifier | undefined, route: string): RouteShorthandOptions {
  if (subscriber === undefined) return {};
  const onRequest = async (request: FastifyRequest) => {
    const token = subscriberToken(request as FastifyRequest<{ Querystring: { authorization?: string } }>);
    if (token === undefined) throw new TokenMissingError(`${route} (SUBSCRIBER_JWT_KEY is set)`);
    const claims = await subscriber.verify(token);
    if (!claims.grant.all) throw new TopicForbiddenError("mercure.subscribe", '"*"');
    statsTokenExpiry.set(request, claims.expiresAt);
  };
  return { onRequest };
}

/**
 * `GET /stats`: what the service is doing right now, as JSON. It names the topics streams listen
 * to, so with `SUBSCRIBER_JWT_KEY` set only a token whose `mercure.subscribe` holds `*` may read it.
 */
export async function statsRoutes(app: FastifyInstance, options: StatsRoutesOptions): Promise<void> {
  const read = createStatsReader(options);
  app.get("/stats", statsAccess(options.subscriber, "GET /stats"), async () => read());
}
