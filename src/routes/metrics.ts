import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { type StatsRoutesOptions, statsAccess } from "./stats.js";

/** At most this many topics get their own `herald_topic_subscribers` series; the rest are summed. */
export const MAX_TOPIC_LABELS = 50;
/** The `topic` label of the series that sums the subscribers of every topic past the busiest ones. */
export const OTHER_TOPICS_LABEL = "_other";

/** Loopback publishes take well under a millisecond; the buckets start there. */
const PUBLISH_BUCKETS_S = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];
/** Publish durations held before they are observed (see `notePublish`). */
const PENDING_DURATIONS = 1024;

let processRegistry: Registry | undefined;

/**
 * The default Node.js metrics (CPU, memory, event loop lag, GC, handles), gathered once per
 * process: they describe the process, not an app, and each `collectDefaultMetrics` call starts an
 * event-loop monitor and a GC observer that are never stopped, which per app would pile up in a
 * process that builds many apps (the tests).
 */
function processMetrics(): Registry {
  if (processRegistry === undefined) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/**
 * The `MAX_TOPIC_LABELS` topics with the most subscribers, and the rest summed under
 * `OTHER_TOPICS_LABEL` (a topic really named `_other` is counted in that series too).
 */
export function boundTopicLabels(counts: Record<string, number>, max = MAX_TOPIC_LABELS): Map<string, number> {
  const sorted = Object.entries(counts).sort((a, b) => b[1] - a[1]);
  const bounded = new Map(sorted.slice(0, max));
  const rest = sorted.slice(max).reduce((sum, [, n]) => sum + n, 0);
  if (rest > 0) bounded.set(OTHER_TOPICS_LABEL, (bounded.get(OTHER_TOPICS_LABEL) ?? 0) + rest);
  return bounded;
}

/** A counter that reads its total from Herald's own counters at scrape time. */
function counterOf(register: Registry, name: string, help: string, read: () => number): Counter {
  return new Counter({
    name,
    help,
    registers: [register],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

/** A gauge that reads its value at scrape time. */
function gaugeOf(register: Registry, name: string, help: string, read: () => number): Gauge {
  return new Gauge({
    name,
    help,
    registers: [register],
    collect() {
      this.set(read());
    },
  });
}

async function metrics(app: FastifyInstance, { hub, streams, ticks, subscriber }: StatsRoutesOptions): Promise<void> {
  // One registry per app, never prom-client's global one: a process may build several apps.
  const register = new Registry();
  gaugeOf(register, "herald_open_streams", "Open event streams of every kind.", () => streams.size);
  gaugeOf(register, "herald_tick_timers", "Live /ticks timers.", () => ticks.timers);
  gaugeOf(register, "herald_buffered_bytes", "Bytes queued for clients that have not taken them yet.", () =>
    streams.bufferedBytes(),
  );
  new Gauge({
    name: "herald_topic_subscribers",
    help: `Subscribers per topic ("*" for every topic); past the ${MAX_TOPIC_LABELS} busiest, summed under topic="${OTHER_TOPICS_LABEL}".`,
    labelNames: ["topic"],
    registers: [register],
    collect() {
      this.reset();
      for (const [topic, n] of boundTopicLabels(hub.topicCounts())) this.set({ topic }, n);
    },
  });
  counterOf(
    register,
    "herald_events_published_total",
    "Events accepted (idempotent re-publishes not counted).",
    () => hub.counters.published,
  );
  counterOf(
    register,
    "herald_events_delivered_total",
    "Events written to streams, live and replayed.",
    () => hub.counters.delivered,
  );
  counterOf(register, "herald_replays_total", "Last-Event-ID resumes that replayed.", () => hub.counters.replays);
  counterOf(
    register,
    "herald_resets_total",
    "Last-Event-ID resumes that sent a reset instead.",
    () => hub.counters.resets,
  );
  counterOf(
    register,
    "herald_streams_closed_too_slow_total",
    "Streams closed because their client stopped reading.",
    () => streams.closedTooSlow,
  );
  // Durations wait here until the next scrape (or until the buffer is full), then go into the
  // histogram together: prom-client's observe, called once per request, took 2.6 µs of a single
  // publish's 112 in a CPU profile; observed together, 0.6 µs.
  const seconds = new Float64Array(PENDING_DURATIONS);
  const statuses = new Uint16Array(PENDING_DURATIONS);
  let pending = 0;
  const observePending = () => {
    // Emptied first: whatever happens below, the buffer takes new durations from its start.
    const count = pending;
    pending = 0;
    for (let i = 0; i < count; i++) publishDuration.observe({ status: String(statuses[i]) }, seconds[i] as number);
  };
  const publishDuration = new Histogram({
    name: "herald_publish_duration_seconds",
    help: "Time to answer POST /events, from the request to the response, by status code.",
    labelNames: ["status"],
    buckets: PUBLISH_BUCKETS_S,
    registers: [register],
    collect: observePending,
  });

  // On the publish route only, not on every route of the instance: a route with an `onResponse`
  // hook makes each of its streams keep Fastify's request and reply for its whole life (see
  // src/sse/end-watched.ts). `onRoute` sees the routes added after it: register this plugin first.
  const notePublish = (_request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    seconds[pending] = reply.elapsedTime / 1_000;
    statuses[pending] = reply.statusCode;
    if (++pending === PENDING_DURATIONS) observePending();
    done();
  };
  app.addHook("onRoute", (route) => {
    if (route.method !== "POST" || route.routePath !== "/events") return;
    route.onResponse = [route.onResponse ?? []].flat().concat(notePublish);
  });

  const scraped = Registry.merge([processMetrics(), register]);
  app.get("/metrics", statsAccess(subscriber, "GET /metrics"), async (_request, reply) => {
    reply.type(scraped.contentType).send(await scraped.metrics());
  });
}

/**
 * `GET /metrics`: Prometheus text. Herald's figures are read from its counters at scrape time (no
 * cost per event); publish latency is a histogram of the time each POST /events took to answer.
 * The topic labels name topics, so with `SUBSCRIBER_JWT_KEY` set it needs the same token as `/stats`.
 */
export const metricsRoutes = fp(metrics, { name: "herald-metrics" });
