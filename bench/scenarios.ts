import { Publisher, TOPIC } from "./publisher.js";
import { type RunningServer, type ServerSpec, startServer } from "./server-process.js";
import type { PoolReport, WorkerPool } from "./worker-pool.js";

/** How big each scenario is: the full run, or `--quick`. */
export interface Scale {
  /** Events in the measured closed-loop phase, per subscriber count. */
  fanoutEvents: Record<number, number>;
  /** The most seconds a measured closed loop publishes for: a slower server publishes fewer events. */
  budgetS: number;
  /** Seconds of publishing at a fixed rate, for latency. */
  fixedRateS: number;
  idleStreams: number;
  /** Longest wait for RSS to settle, before and after opening the idle streams. */
  settleMs: number;
  slowBytes: number;
  publishEvents: number;
}

export const FULL: Scale = {
  fanoutEvents: { 1000: 3_000, 10000: 600 },
  budgetS: 20,
  fixedRateS: 10,
  idleStreams: 19_000,
  settleMs: 10_000,
  slowBytes: 50 * 1024 * 1024,
  publishEvents: 100_000,
};

/** Every scenario, small: to check the bench works, not to quote. */
export const QUICK: Scale = {
  fanoutEvents: { 1000: 200, 10000: 10 },
  budgetS: 3,
  fixedRateS: 1,
  idleStreams: 2_000,
  settleMs: 2_000,
  slowBytes: 5 * 1024 * 1024,
  publishEvents: 2_000,
};

/** Figures of one scenario on one server, by metric name (see `METRICS` in report.ts). */
export type Figures = Record<string, number>;

/** Characters after the timestamp in each small event: about 100 bytes per event on the wire. */
const SMALL_PADDING = 60;
/** Data per event in the slow-client scenario: a publish body stays under Herald's 64 KiB limit. */
const LARGE_PADDING = 60_000;
/** Deliveries per second while latency is measured: a load every server here keeps up with. */
const FIXED_RATE_DELIVERIES_PER_S = 20_000;
/** Closed loop: publishes open at once, and events published that some reader still lacks. */
const FANOUT_IN_FLIGHT = 32;
const FANOUT_WINDOW = 256;
const PUBLISH_IN_FLIGHT = 64;
const PUBLISH_WINDOW = 4_000;
/** A server using this much memory in the slow-client scenario has failed it; stop before the box suffers. */
const MAX_RSS_BYTES = 3 * 1024 ** 3;
const START_TIMEOUT_MS = 15_000;
const CONNECT_TIMEOUT_MS = 120_000;
const PATH = `/events?topic=${TOPIC}`;
const WORKER_COUNT_NOTE = "every reader got every event once, in order";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A scenario: starts its own server, measures, checks every reader, and stops the server. */
export type Scenario = (spec: ServerSpec, pool: WorkerPool, scale: Scale) => Promise<Figures>;

async function withServer(
  spec: ServerSpec,
  pool: WorkerPool,
  connections: number,
  body: (server: RunningServer, publisher: Publisher) => Promise<Figures>,
): Promise<Figures> {
  const server = await startServer(spec, START_TIMEOUT_MS);
  const publisher = new Publisher(server.port, connections, spec.rawPublishPath);
  pool.ids = spec.ids ?? "sequence";
  try {
    return await body(server, publisher);
  } finally {
    await publisher.close().catch(() => {});
    await pool.closeAll().catch(() => {});
    await server.stop();
  }
}

function loopOptions(pool: WorkerPool, count: number, padding: number, timeoutMs: number) {
  return {
    count,
    padding,
    timeoutMs,
    delivered: () => pool.completed(),
    onProgress: (callback: () => void) => {
      pool.onProgress = callback;
    },
  };
}

/** Fails unless every reader received exactly the `published` events, each once and in order. */
function verify(report: PoolReport, published: number): void {
  if (report.outOfOrder > 0) throw new Error(`${report.outOfOrder} events out of order: ${report.firstError}`);
  if (report.readersClosed > 0) throw new Error(`the server closed ${report.readersClosed} readers`);
  if (report.minEvents !== published || report.maxEvents !== published) {
    throw new Error(
      `readers got ${report.minEvents} to ${report.maxEvents} events of ${published}: not ${WORKER_COUNT_NOTE}`,
    );
  }
}

/**
 * N subscribers on one topic. Closed loop: deliveries/s and the server's CPU-seconds per million
 * deliveries. Then a fixed rate of 20,000 deliveries/s: publish → deliver latency.
 */
export function fanout(subscribers: number): Scenario {
  return (spec, pool, scale) =>
    withServer(spec, pool, FANOUT_IN_FLIGHT, async (server, publisher) => {
      await pool.connect(server.port, PATH, subscribers, "reader", CONNECT_TIMEOUT_MS);
      const closed = { inFlight: FANOUT_IN_FLIGHT, window: FANOUT_WINDOW };
      const events = scale.fanoutEvents[subscribers] ?? 100;
      const budgetMs = scale.budgetS * 1000;
      const warmUp = loopOptions(pool, Math.ceil(events / 5), SMALL_PADDING, 60_000);
      await publisher.closedLoop({ ...warmUp, ...closed, budgetMs: budgetMs / 4 });

      await pool.phase(false);
      const cpuBefore = server.cpuSeconds();
      const loop = await publisher.closedLoop({
        ...loopOptions(pool, events, SMALL_PADDING, 300_000),
        ...closed,
        budgetMs,
      });
      const cpu = server.cpuSeconds() - cpuBefore;
      const deliveries = loop.count * subscribers;

      const ratePerS = FIXED_RATE_DELIVERIES_PER_S / subscribers;
      await pool.phase(true);
      const count = Math.round(ratePerS * scale.fixedRateS);
      const cpuBeforeFixed = server.cpuSeconds();
      await publisher.fixedRate({
        ...loopOptions(pool, count, SMALL_PADDING, scale.fixedRateS * 1000 + 60_000),
        ratePerS,
      });
      const cpuFixed = server.cpuSeconds() - cpuBeforeFixed;
      const report = await pool.report();
      verify(report, publisher.published);
      return {
        deliveriesPerS: deliveries / (loop.deliveredMs / 1000),
        cpuPerMillion: cpu / (deliveries / 1e6),
        // Events far apart: each one is a write of its own on every stream, with nothing to coalesce.
        cpuPerMillionFixedRate: cpuFixed / ((count * subscribers) / 1e6),
        p50Ms: report.latency.percentile(50) / 1000,
        p99Ms: report.latency.percentile(99) / 1000,
        maxMs: report.latency.max / 1000,
      };
    });
}

/** Waits until RSS has stopped moving (within 1 % over half a second), at most `maxMs`. */
async function settledRss(server: RunningServer, maxMs: number): Promise<number> {
  const deadline = Date.now() + maxMs;
  let last = server.rssBytes();
  for (;;) {
    await sleep(500);
    const now = server.rssBytes();
    if (Math.abs(now - last) < last * 0.01 || Date.now() > deadline) return now;
    last = now;
  }
}

/**
 * Opens `scale.idleStreams` streams on one process (a few first, so code warm-up is not counted),
 * reports RSS per idle stream, then publishes one event that every stream must get.
 */
export const idle: Scenario = (spec, pool, scale) =>
  withServer(spec, pool, 1, async (server, publisher) => {
    const warm = Math.min(500, scale.idleStreams / 4);
    await pool.connect(server.port, PATH, warm, "reader", CONNECT_TIMEOUT_MS);
    await publisher.closedLoop({ ...loopOptions(pool, 5, SMALL_PADDING, 30_000), inFlight: 1, window: 1 });
    const before = await settledRss(server, scale.settleMs / 2);
    const more = scale.idleStreams - warm;
    await pool.connect(server.port, PATH, more, "reader", CONNECT_TIMEOUT_MS, publisher.published);
    const after = await settledRss(server, scale.settleMs);
    await publisher.closedLoop({ ...loopOptions(pool, 1, SMALL_PADDING, 60_000), inFlight: 1, window: 1 });
    verify(await pool.report(), publisher.published);
    return {
      kbPerStream: (after - before) / (scale.idleStreams - warm) / 1024,
      streams: scale.idleStreams,
    };
  });

/**
 * Publishes `events` large events closed-loop while sampling the server's RSS every 20 ms; gives
 * up (and stops the server) past `MAX_RSS_BYTES`. Returns the loop's times and the RSS growth.
 */
async function publishWatchingRss(server: RunningServer, publisher: Publisher, pool: WorkerPool, events: number) {
  const before = server.rssBytes();
  let peak = before;
  const sampler = setInterval(() => {
    peak = Math.max(peak, server.rssBytes());
    if (peak > MAX_RSS_BYTES) {
      clearInterval(sampler);
      void server.stop();
    }
  }, 20);
  try {
    const loop = await publisher.closedLoop({
      ...loopOptions(pool, events, LARGE_PADDING, 120_000),
      inFlight: 4,
      window: 16,
    });
    peak = Math.max(peak, server.rssBytes());
    return { ...loop, growth: peak - before };
  } catch (err) {
    if (peak > MAX_RSS_BYTES) throw new Error(`RSS passed ${MAX_RSS_BYTES / 1024 ** 3} GiB: stopped`);
    throw err;
  } finally {
    clearInterval(sampler);
  }
}

/**
 * 10 readers take `scale.slowBytes` of 60 KB events; then the same again with 10 more clients
 * that never read. Reports the server's RSS growth during the second publish, and how much
 * longer the readers took with the stalled clients there.
 */
export const slowClients: Scenario = (spec, pool, scale) =>
  withServer(spec, pool, 4, async (server, publisher) => {
    const events = Math.ceil(scale.slowBytes / LARGE_PADDING);
    await pool.connect(server.port, PATH, 10, "reader", CONNECT_TIMEOUT_MS);
    const { deliveredMs: aloneMs } = await publishWatchingRss(server, publisher, pool, events);
    await pool.connect(server.port, PATH, 10, "stalled", CONNECT_TIMEOUT_MS, publisher.published);
    const stalled = await publishWatchingRss(server, publisher, pool, events);
    verify(await pool.report(), publisher.published);
    return { rssGrowthMb: stalled.growth / 1024 ** 2, readerSlowdown: stalled.deliveredMs / aloneMs };
  });

/** 100 subscribers, small events, closed loop with many publishes open: publishes/s accepted. */
export const publishRate: Scenario = (spec, pool, scale) =>
  withServer(spec, pool, PUBLISH_IN_FLIGHT, async (server, publisher) => {
    const closed = { inFlight: PUBLISH_IN_FLIGHT, window: PUBLISH_WINDOW };
    await pool.connect(server.port, PATH, 100, "reader", CONNECT_TIMEOUT_MS);
    const warmUp = loopOptions(pool, scale.publishEvents / 20, SMALL_PADDING, 60_000);
    await publisher.closedLoop({ ...warmUp, ...closed, budgetMs: (scale.budgetS * 1000) / 4 });
    await pool.phase(false);
    const cpuBefore = server.cpuSeconds();
    const loop = await publisher.closedLoop({
      ...loopOptions(pool, scale.publishEvents, SMALL_PADDING, 300_000),
      ...closed,
      budgetMs: scale.budgetS * 1000,
    });
    const cpu = server.cpuSeconds() - cpuBefore;
    verify(await pool.report(), publisher.published);
    return {
      publishesPerS: loop.count / (loop.acknowledgedMs / 1000),
      cpuPerThousandPublishes: cpu / (loop.count / 1000),
    };
  });
