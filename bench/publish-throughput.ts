/**
 * `npm run bench:publish [-- options]`: how many events Herald accepts per second over HTTP, in
 * batches (`POST /events` with a JSON array) and one by one, on each broker, while subscribers
 * connected to the published topic receive every event (each checked: once, in order).
 * Closed loop: a fixed number of requests in flight, and at most `--window` events published that
 * some subscriber has not received yet, so the figure is what Herald sustains, delivery included.
 * Every loop is bounded in count and in time. Options:
 *   --seconds <n>       publishing time per measurement (default 10)
 *   --subscribers <n>   subscribers on the published topic (default 100)
 *   --batch <n>         events per batch (default 500)
 *   --brokers <a,b>     memory, sqlite, redis (default: all three; redis needs REDIS_URL or 127.0.0.1:6379)
 *   --out <file.md>     where to write (default bench/RESULTS-publish.md)
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, release, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Pool } from "undici";
import { cpuBusyPercent, OTHER_WORK_PERCENT } from "./machine.js";
import { nowUs, TOPIC } from "./publisher.js";
import { killAllServers, type RunningServer, type ServerSpec, startServer } from "./server-process.js";
import { WorkerPool } from "./worker-pool.js";

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "10" },
    subscribers: { type: "string", default: "100" },
    batch: { type: "string", default: "500" },
    brokers: { type: "string", default: "memory,sqlite,redis" },
    out: { type: "string" },
  },
});
const SECONDS = Number(args.seconds);
const SUBSCRIBERS = Number(args.subscribers);
const BATCH = Number(args.batch);
const BROKERS = (args.brokers ?? "").split(",").filter(Boolean);
const OUT = args.out ?? new URL("../bench/RESULTS-publish.md", import.meta.url).pathname;
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
/** About 100 bytes per event on the wire, as in the other publish scenarios. */
const PADDING = "x".repeat(60);
const WORKERS = 2;

/** One way of publishing: events per request and requests in flight. */
interface Mode {
  name: string;
  perRequest: number;
  inFlight: number;
  /** Events published that some subscriber still lacks, at most. */
  window: number;
  /**
   * Whether the subscribers are on the published topic. When they are not, they stay connected on
   * another topic: what is measured is Herald taking events in, not the load generator reading
   * 100 copies of each (on two shared cores, the readers, not Herald, set that pace).
   */
  receiving: boolean;
}
const MODES: Mode[] = [
  { name: `batches of ${BATCH}`, perRequest: BATCH, inFlight: 4, window: BATCH * 16, receiving: true },
  { name: "single events", perRequest: 1, inFlight: 64, window: 4_000, receiving: true },
  {
    name: `batches of ${BATCH}, subscribers on another topic`,
    perRequest: BATCH,
    inFlight: 4,
    window: Number.POSITIVE_INFINITY,
    receiving: false,
  },
  {
    name: "single events, subscribers on another topic",
    perRequest: 1,
    inFlight: 64,
    window: Number.POSITIVE_INFINITY,
    receiving: false,
  },
];

interface Figures {
  broker: string;
  mode: string;
  events: number;
  /** Events acknowledged (201) per second, from the first request to the last answer. */
  acceptedPerS: number;
  /** Events per second until every subscriber had every one. */
  deliveredPerS: number;
  /** Server CPU-seconds per million events accepted (all its threads). */
  cpuSPerMillion: number;
  rssMB: number;
}

function heraldEnv(broker: string): { env: Record<string, string>; cleanup: () => Promise<void> } {
  const base = {
    LOG_LEVEL: "warn",
    MAX_CONNECTIONS: "0",
    MAX_CONNECTIONS_PER_IP: "0",
    PUBLISH_RATE_LIMIT: "0",
  };
  if (broker === "sqlite") {
    const dir = mkdtempSync(join(tmpdir(), "herald-bench-"));
    return {
      env: { ...base, BROKER: "sqlite", DATABASE_PATH: join(dir, "herald.db") },
      cleanup: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  if (broker === "redis") {
    const prefix = `herald-bench-${process.pid}-${Date.now()}`;
    return {
      env: { ...base, BROKER: "redis", REDIS_URL, REDIS_PREFIX: prefix },
      cleanup: async () => {
        const { Redis } = await import("ioredis");
        const redis = new Redis(REDIS_URL);
        const keys = await redis.keys(`${prefix}:*`);
        if (keys.length > 0) await redis.del(...keys);
        await redis.quit();
      },
    };
  }
  return { env: base, cleanup: async () => {} };
}

/**
 * An event, with the publisher id `e-<n>` when `withIds` (Redis's extra row: see `WITH_IDS_MODE`).
 * The bench's readers check that ids end in consecutive numbers. Memory and SQLite ids do
 * (`<run>-<n>`), in the order Herald stored the events. Redis assigns `<ms>-<n>`, whose `n` starts
 * again each millisecond, so with Redis only the count is checked.
 */
function event(n: number, withIds: boolean): string {
  const id = withIds ? `,"id":"e-${n}"` : "";
  return `{"topic":"${TOPIC}","data":"${nowUs()} ${PADDING}"${id}}`;
}

/** A single event is sent as an object, as single publishers send it; more as a batch. */
function body(count: number, first: number, withIds: boolean): string {
  if (count === 1) return event(first, withIds);
  return `[${Array.from({ length: count }, (_, i) => event(first + i, withIds)).join(",")}]`;
}

/** Publishes to a fresh server for `SECONDS`, then waits until every subscriber has every event. */
async function measure(server: RunningServer, pool: WorkerPool, mode: Mode, withIds: boolean) {
  const http = new Pool(`http://127.0.0.1:${server.port}`, { connections: mode.inFlight, pipelining: 1 });
  const cpuBefore = server.cpuSeconds();
  const started = performance.now();
  const deadline = started + SECONDS * 1_000;
  let sent = 0;
  let acked = 0;
  let lastAck = started;
  let failure: Error | undefined;
  // Requests waiting for the slowest subscriber to catch up, woken by the workers' progress reports.
  const waiting = new Set<() => void>();
  pool.onProgress = () => {
    for (const wake of waiting) wake();
    waiting.clear();
  };
  const waitForWindow = async () => {
    while (sent - pool.completed() >= mode.window && failure === undefined) {
      await new Promise<void>((resolve) => {
        waiting.add(resolve);
        setTimeout(resolve, 100);
      });
      if (performance.now() > deadline + 30_000) failure = new Error("subscribers fell 30 s behind");
    }
  };
  const worker = async () => {
    while (performance.now() < deadline && failure === undefined) {
      await waitForWindow();
      const first = sent + 1;
      sent += mode.perRequest;
      const res = await http.request({
        path: "/events",
        method: "POST",
        headers: { "content-type": "application/json" },
        body: body(mode.perRequest, first, withIds),
      });
      const text = await res.body.text();
      if (res.statusCode !== 201) failure ??= new Error(`publish answered ${res.statusCode}: ${text.slice(0, 300)}`);
      acked += mode.perRequest;
      lastAck = performance.now();
    }
  };
  await Promise.all(Array.from({ length: mode.inFlight }, worker));
  if (failure) throw failure;
  const target = mode.receiving ? acked : 0;
  while (pool.completed() < target) {
    if (performance.now() > lastAck + 60_000)
      throw new Error(`subscribers got ${pool.completed()} of ${target} events`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const deliveredAt = performance.now();
  await http.destroy();
  return {
    events: acked,
    acceptedPerS: acked / ((lastAck - started) / 1_000),
    deliveredPerS: acked / ((deliveredAt - started) / 1_000),
    cpuSPerMillion: ((server.cpuSeconds() - cpuBefore) / acked) * 1e6,
    rssMB: server.rssBytes() / 1024 ** 2,
  };
}

/**
 * Redis only, one more row: batches with subscribers on another topic, each event with a publisher
 * id, for which Redis keeps an entry and an idempotency key per event (without ids, one of each per batch).
 */
const WITH_IDS_MODE: Mode = {
  ...(MODES.find((mode) => mode.perRequest === BATCH && !mode.receiving) as Mode),
  name: `batches of ${BATCH}, subscribers on another topic, each event with a publisher id`,
};

/** The mode the floor is measured in: single events, subscribers connected on another topic. */
const FLOOR_MODE = MODES.find((mode) => mode.perRequest === 1 && !mode.receiving) as Mode;
/** What the floor row's broker column says. */
const FLOOR_LABEL = "none: a bare Fastify route";

/**
 * The same single publishes sent to a Fastify route that only parses the JSON body and answers
 * 201 with an id (the @fastify/sse peer's `POST /events`, with its subscribers on another topic):
 * what a Fastify app can take on this machine with this load generator, whatever it does with the event.
 */
const FLOOR_SERVER: ServerSpec = {
  name: "fastify",
  label: "Fastify",
  script: new URL("./peers/fastify-sse.js", import.meta.url).pathname,
};

/**
 * One row: `server` started, the subscribers connected (on the published topic or another), `mode`
 * measured, and every subscriber checked to have got what was due (in order when `ordered`: see
 * `event`).
 */
async function measureRow(
  pool: WorkerPool,
  spec: ServerSpec,
  broker: string,
  mode: Mode,
  withIds: boolean,
  ordered: boolean,
): Promise<Figures> {
  const server = await startServer(spec, 15_000);
  try {
    const topic = mode.receiving ? TOPIC : "elsewhere";
    await pool.connect(server.port, `/events?topic=${topic}`, SUBSCRIBERS, "reader", 60_000);
    await pool.phase(false);
    const figures = await measure(server, pool, mode, withIds);
    const report = await pool.report();
    if (ordered && report.outOfOrder > 0)
      throw new Error(`${report.outOfOrder} events out of order: ${report.firstError}`);
    if (report.readersClosed > 0) throw new Error(`the server closed ${report.readersClosed} subscribers`);
    const due = mode.receiving ? figures.events : 0;
    if (report.minEvents !== due || report.maxEvents !== due) {
      throw new Error(`subscribers got ${report.minEvents} to ${report.maxEvents} of ${due} events`);
    }
    console.log(
      `${broker}, ${mode.name}: ${Math.round(figures.acceptedPerS).toLocaleString("en-US")} events/s accepted`,
    );
    return { broker, mode: mode.name, ...figures };
  } finally {
    await pool.closeAll().catch(() => {});
    await server.stop();
  }
}

async function main(): Promise<void> {
  const loadBefore = loadavg();
  const cpuBusyBefore = await cpuBusyPercent();
  const pool = new WorkerPool(WORKERS);
  const results: Figures[] = [];
  try {
    for (const broker of BROKERS) {
      for (const [mode, withIds] of [
        ...MODES.map((mode) => [mode, false] as const),
        ...(broker === "redis" ? [[WITH_IDS_MODE, true] as const] : []),
      ]) {
        const { env, cleanup } = heraldEnv(broker);
        const herald: ServerSpec = {
          name: "herald",
          label: "Herald",
          script: new URL("../dist/main.js", import.meta.url).pathname,
          env,
        };
        try {
          results.push(await measureRow(pool, herald, broker, mode, withIds, broker !== "redis"));
        } finally {
          await cleanup();
        }
      }
    }
    results.push(await measureRow(pool, FLOOR_SERVER, FLOOR_LABEL, FLOOR_MODE, false, true));
  } finally {
    pool.kill();
    killAllServers();
  }
  writeFileSync(OUT, render(results, loadBefore, loadavg(), cpuBusyBefore));
  console.log(`wrote ${OUT}`);
}

/** Issue 12's two publish goals, per broker, from the best row of each kind. */
function goals(results: Figures[]): string[] {
  const n = (x: number) => Math.round(x).toLocaleString("en-US");
  const lines: string[] = [];
  const floor = results.find((r) => r.broker === FLOOR_LABEL)?.acceptedPerS;
  for (const broker of BROKERS) {
    const best = (perRequest: number) =>
      Math.max(
        0,
        ...results
          .filter((r) => r.broker === broker && MODES.some((m) => m.name === r.mode && m.perRequest === perRequest))
          .map((r) => r.acceptedPerS),
      );
    const batches = best(BATCH);
    const singles = best(1);
    lines.push(
      `- ${batches >= 200_000 ? "met" : "NOT met"}: ${broker}, >= 200,000 events/s in batches (${n(batches)})`,
    );
    const share = floor ? `, ${(singles / floor).toFixed(2)} of the bare Fastify floor` : "";
    lines.push(
      `- ${singles >= 20_000 ? "met" : "NOT met"}: ${broker}, >= 20,000 single publishes/s (${n(singles)}${share})`,
    );
  }
  if (floor !== undefined && floor < 20_000) {
    lines.push(
      `- The bare Fastify floor was ${n(floor)}/s in this run: with this machine and load generator no broker can meet the single-publish goal, whatever Herald does.`,
    );
  }
  return lines;
}

/** What the CPU sample before the first row says of the machine. */
function cpuBefore(busy: number | undefined): string {
  if (busy === undefined) return "CPU in use before the first row: unknown (no `/proc/stat`).";
  const verdict =
    busy > OTHER_WORK_PERCENT
      ? "**other work shared the machine**, so read the figures for their order of magnitude"
      : "nothing else was running";
  return `CPU in use in the 3 s before the first row: ${busy.toFixed(1)} % of all cores (\`/proc/stat\`): ${verdict}.`;
}

function render(results: Figures[], before: number[], after: number[], cpuBusyBefore: number | undefined): string {
  const n = (x: number) => Math.round(x).toLocaleString("en-US");
  const rows = results.map(
    (r) =>
      `| ${r.broker} | ${r.mode} | ${n(r.acceptedPerS)} | ${r.mode.includes("another topic") ? "(none due)" : n(r.deliveredPerS)} | ${n(r.events)} | ${r.cpuSPerMillion.toFixed(1)} | ${r.rssMB.toFixed(0)} |`,
  );
  const load = (l: number[]) => l.map((x) => x.toFixed(1)).join(" / ");
  return `# Publish throughput: batches and single events

Written by \`npm run bench:publish\` (\`bench/publish-throughput.ts\`); \`npm run bench\` runs it too.
Herald runs as its own process (\`dist/main.js\`); ${SUBSCRIBERS} subscribers on the published topic, in
${WORKERS} load-generator processes, receive and check every event (once, in order). Closed loop for
${SECONDS} s per row: batches of ${BATCH} with 4 requests in flight, or single events with 64 in flight, and
never more than 16 batches (or 4,000 events) published ahead of the slowest subscriber. About 100 bytes
per event on the wire. Events carry no publisher id, on every broker. Memory and SQLite assign
consecutive ids, and every subscriber is checked to get them in that order; Redis assigns
\`<ms>-<n>\`, whose \`n\` starts again each millisecond, so with Redis the subscribers' counts are
checked but not the order. The Redis row "each event with a publisher id" sends the same batches
with an id on each event, for which Redis keeps a stream entry and an idempotency key per event
(a batch without ids is one entry, with one key). Rows "subscribers on another topic": the ${SUBSCRIBERS} subscribers stay connected on
another topic and receive nothing, and nothing holds the publisher back but Herald's answers: what
Herald takes in, apart from what the load generator can read. The last row is a floor for single
publishes: the same load against a Fastify route that parses the body and answers 201 with an id,
and does nothing else (the @fastify/sse peer of \`npm run bench\`): no Herald can answer faster
than the Fastify app it is, on this machine and with this load generator.

Goals (issue 12): at least 200,000 events/s accepted in batches of 500 with 100 subscribers connected, on each
broker; single publishes at least 20,000/s. In this run (best row of each broker):

${goals(results).join("\n")}

| broker | publishes | events/s accepted | events/s delivered to every subscriber | events | server CPU-s per million events | server RSS (MB) |
|---|---|---|---|---|---|---|
${rows.join("\n")}

Machine: ${cpus().length} × ${cpus()[0]?.model ?? "?"}, ${(totalmem() / 1024 ** 3).toFixed(0)} GiB, Linux ${release()}, Node.js ${process.version}.
${cpuBefore(cpuBusyBefore)}
Load average (1/5/15 min) before: ${load(before)}; after: ${load(after)} (it still counts work that ended minutes
before, \`npm run bench\`'s own scenarios when that ran this).
Command: \`npm run bench:publish -- --seconds ${SECONDS} --subscribers ${SUBSCRIBERS} --batch ${BATCH} --brokers ${BROKERS.join(",")}\`
`;
}

process.on("exit", () => killAllServers());
await main();
