import type { FastifyInstance } from "fastify";
import { InvalidQueryError } from "../errors.js";
import { encodeEvent } from "../sse/encode.js";
import type { StreamRegistry } from "../sse/stream-registry.js";
import { rejectUnknownQuery } from "./query.js";
import { resumeId } from "./resume-id.js";

/** Options for the ticks route. */
export interface TicksRoutesOptions {
  streams: StreamRegistry;
  tickMs: number;
}

/** Live per-connection tick timers, for `/stats`. */
export interface TickCounters {
  timers: number;
}

/** The query parameters of `GET /ticks`; any other is a 400. `authorization` is taken and ignored: ticks need no token. */
export const TICKS_QUERY = ["interval", "lastEventId", "authorization"] as const;

export const MIN_TICK_MS = 100;
export const MAX_TICK_MS = 60_000;

function parseInterval(raw: unknown, fallback: number): number {
  if (raw === undefined) return fallback;
  const value = typeof raw === "string" && /^\d{1,6}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(value >= MIN_TICK_MS && value <= MAX_TICK_MS)) {
    throw new InvalidQueryError(
      `interval must be a whole number of milliseconds from ${MIN_TICK_MS} to ${MAX_TICK_MS}`,
    );
  }
  return value;
}

function parseResumeSeq(raw: string | undefined): number {
  if (raw === undefined || raw === "") return 0;
  if (!/^\d{1,15}$/.test(raw)) {
    throw new InvalidQueryError("Last-Event-ID on /ticks must be a tick number sent by this stream");
  }
  return Number(raw);
}

/**
 * `GET /ticks`: a clock for one connection. Its timer starts with the stream and is cleared the
 * moment the stream closes. Tick ids are the sequence number, so a reconnect continues it.
 */
export async function ticksRoutes(app: FastifyInstance, options: TicksRoutesOptions & { counters: TickCounters }) {
  const { streams, tickMs, counters } = options;
  const route = { exposeHeadRoute: false };
  app.get<{ Querystring: { interval?: string | string[]; lastEventId?: string | string[] } }>(
    "/ticks",
    route,
    async (request, reply) => {
      rejectUnknownQuery("GET /ticks", request.query, TICKS_QUERY);
      const interval = parseInterval(request.query.interval, tickMs);
      let seq = parseResumeSeq(resumeId(request.headers["last-event-id"], request.query.lastEventId));

      const stream = streams.open(reply);
      const tick = () => {
        seq++;
        const data = JSON.stringify({ time: new Date().toISOString(), seq });
        stream.send(encodeEvent({ id: String(seq), event: "tick", data }));
      };
      tick();
      const timer = setInterval(tick, interval);
      counters.timers++;
      stream.onClose(() => {
        clearInterval(timer);
        counters.timers--;
      });
    },
  );
}
