import type { FastifyInstance, FastifyRequest } from "fastify";
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

/**
 * `GET /stats`: what the service is doing right now, as JSON. It names the topics streams listen
 * to, so with `SUBSCRIBER_JWT_KEY` set only a token whose `mercure.subscribe` holds `*` may read it.
 */
export async function statsRoutes(app: FastifyInstance, options: StatsRoutesOptions): Promise<void> {
  const { hub, streams, ticks, subscriber } = options;
  const startedAt = Date.now();

  const onRequest = async (request: FastifyRequest<{ Querystring: { authorization?: string | string[] } }>) => {
    const token = subscriberToken(request);
    if (token === undefined) throw new TokenMissingError("GET /stats (SUBSCRIBER_JWT_KEY is set)");
    if (!(await subscriber?.verify(token))?.grant.all) throw new TopicForbiddenError("mercure.subscribe", '"*"');
  };

  app.get("/stats", subscriber ? { onRequest } : {}, async () => ({
    connections: streams.size,
    timers: ticks.timers,
    topics: hub.topicCounts(),
    ...hub.counters,
    closedTooSlow: streams.closedTooSlow,
    bufferedBytes: streams.bufferedBytes(),
    uptimeS: Math.floor((Date.now() - startedAt) / 1000),
  }));
}
