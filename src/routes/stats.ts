import type { FastifyInstance } from "fastify";
import type { Hub } from "../hub/hub.js";
import type { StreamRegistry } from "../sse/stream-registry.js";
import type { TickCounters } from "./ticks.js";

/** Options for the stats route. */
export interface StatsRoutesOptions {
  hub: Hub;
  streams: StreamRegistry;
  ticks: TickCounters;
}

/** `GET /stats`: what the service is doing right now, as JSON. */
export async function statsRoutes(app: FastifyInstance, { hub, streams, ticks }: StatsRoutesOptions): Promise<void> {
  const startedAt = Date.now();

  app.get("/stats", async () => ({
    connections: streams.size,
    timers: ticks.timers,
    topics: hub.topicCounts(),
    ...hub.counters,
    closedTooSlow: streams.closedTooSlow,
    bufferedBytes: streams.bufferedBytes(),
    uptimeS: Math.floor((Date.now() - startedAt) / 1000),
  }));
}
