import type { FastifyInstance } from "fastify";
import type { TokenExpiry } from "../auth/token-expiry.js";
import { encodeEvent } from "../sse/encode.js";
import type { SseStream } from "../sse/sse-stream.js";
import { rejectUnknownQuery } from "./query.js";
import { createStatsReader, type Stats, type StatsRoutesOptions, statsAccess, statsTokenExpiry } from "./stats.js";

/** Options for the stats stream route. */
export interface StatsStreamRoutesOptions extends StatsRoutesOptions {
  /** The reconnection delay every stream announces (`RETRY_MS`), passed on so a page can count it down. */
  retryMs: number;
  /** Ends a watcher's stream when the token that let it in expires. */
  expiry: TokenExpiry;
}

/** The query parameters of `GET /stats/stream`; any other is a 400. */
export const STATS_STREAM_QUERY = ["authorization"] as const;

/** One `stats` event per watcher this often. */
export const STATS_STREAM_MS = 1_000;

/** The data of each `stats` event: the `/stats` figures and what changed over the last period. */
export interface StatsSample extends Stats {
  /** Events accepted during the last period of `STATS_STREAM_MS`, per second. */
  publishedPerS: number;
  /** Events written to streams during the last period, per second. */
  deliveredPerS: number;
  retryMs: number;
}

/**
 * `GET /stats/stream`: the `/stats` figures as an event stream, one `stats` event at once and then
 * one a second. A single timer serves every watcher, encodes each sample once, and exists only
 * while someone watches. With `SUBSCRIBER_JWT_KEY` set it needs the same token as `/stats`.
 */
export async function statsStreamRoutes(app: FastifyInstance, options: StatsStreamRoutesOptions): Promise<void> {
  const read = createStatsReader(options);
  const watchers = new Set<SseStream>();
  let timer: NodeJS.Timeout | undefined;
  let last = read();
  let rates = { publishedPerS: 0, deliveredPerS: 0 };
  const perS = 1_000 / STATS_STREAM_MS;

  const sample = (stats: Stats): Buffer => {
    const data: StatsSample = { ...stats, ...rates, retryMs: options.retryMs };
    return encodeEvent({ event: "stats", data: JSON.stringify(data) });
  };

  const tick = () => {
    const now = read();
    rates = {
      publishedPerS: (now.published - last.published) * perS,
      deliveredPerS: (now.delivered - last.delivered) * perS,
    };
    last = now;
    const bytes = sample(now);
    for (const watcher of watchers) watcher.send(bytes);
  };

  const route = { ...statsAccess(options.subscriber, "GET /stats/stream"), exposeHeadRoute: false };
  app.get("/stats/stream", route, async (request, reply) => {
    rejectUnknownQuery("GET /stats/stream", request.query, STATS_STREAM_QUERY);
    const stream = options.streams.open(reply);
    const expiresAt = statsTokenExpiry.get(request);
    if (expiresAt !== undefined) options.expiry.track(stream, expiresAt);
    if (timer === undefined) {
      last = read();
      rates = { publishedPerS: 0, deliveredPerS: 0 };
      timer = setInterval(tick, STATS_STREAM_MS);
    }
    watchers.add(stream);
    stream.send(sample(read()));
    stream.onClose(() => {
      watchers.delete(stream);
      if (watchers.size === 0) {
        clearInterval(timer);
        timer = undefined;
      }
    });
  });
}
