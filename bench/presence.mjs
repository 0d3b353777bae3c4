// What a connect storm costs with presence on (SUBSCRIPTIONS=true): N subscribers (10,000 by
// default) join, then leave, through the presence registry, arriving PER_TURN per event-loop turn
// (a burst of connections reaching one node). Runs against a private redis-server on a free port,
// so Redis's command counter sees this bench only. Measures, per scenario: wall time for all joins
// to be written and announced (then all leaves), Redis round trips the registry made, and Redis
// commands processed, per join. Prints a Markdown table.
// Run: npm run build && node bench/presence.mjs   (env: N, PER_TURN, REPEAT)
// Bounded: N joins and N leaves per scenario, each phase with a DEADLINE_MS.
import { cpus, loadavg } from "node:os";
import pino from "pino";
import { MemoryBroker } from "../dist/broker/memory-broker.js";
import { RedisBroker } from "../dist/broker/redis-broker.js";
import { PresenceRegistry } from "../dist/mercure/presence.js";
import { RedisPresenceStore } from "../dist/mercure/presence-redis.js";
import { nodeCpuMs, redisCpuMs, startPrivateRedis } from "./private-redis.mjs";

const N = Number(process.env.N ?? 10_000);
const PER_TURN = (process.env.PER_TURN ?? "1,100").split(",").map(Number);
const REPEAT = Number(process.env.REPEAT ?? 3);
const DEADLINE_MS = 120_000;
const TOPICS = ["https://example.com/books/{id}"];
const log = pino({ level: "silent" });

const redis = await startPrivateRedis();
const { url, admin } = redis;

async function commandsProcessed() {
  const info = await admin.info("stats");
  return Number(/total_commands_processed:(\d+)/.exec(info)?.[1]);
}

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

/** Resolves when `count()` reaches `target`, or rejects after DEADLINE_MS. */
async function until(what, count, target) {
  const deadline = Date.now() + DEADLINE_MS;
  while (count() < target) {
    if (Date.now() > deadline) throw new Error(`${what}: ${count()} of ${target} after ${DEADLINE_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/**
 * One storm: `engine` is "redis" (RedisPresenceStore) or "local"; `updates` is "none" (publish
 * counts only: the registry's own cost) or "broker" (each update published to the broker, as the
 * hub would: MemoryBroker for local, RedisBroker for redis).
 */
async function storm({ engine, updates, perTurn }) {
  const prefix = `bench-presence-${Math.random().toString(36).slice(2)}`;
  const store = engine === "redis" ? new RedisPresenceStore({ url, prefix, log }) : undefined;
  const broker =
    updates === "none"
      ? undefined
      : engine === "redis"
        ? await RedisBroker.connect({ url, prefix, historySize: 100_000, log })
        : new MemoryBroker({ historySize: 100_000 });
  let announced = 0;
  const presence = new PresenceRegistry({
    publish: async (input) => {
      if (broker !== undefined) await broker.publish(input);
      announced++;
    },
    log,
    ...(store && { store }),
  });
  await presence.start();
  const trips0 = store?.roundTrips ?? 0;
  const commands0 = await commandsProcessed();
  const redisCpu0 = await redisCpuMs(admin);
  const nodeCpu0 = nodeCpuMs();

  const leaves = [];
  const joinStart = performance.now();
  for (let i = 0; i < N; i++) {
    leaves.push(presence.join({ subscriber: `urn:uuid:${prefix}-${i}`, topics: TOPICS, payload: { i } }));
    if ((i + 1) % perTurn === 0) await nextTurn();
  }
  await until("joins announced", () => announced, N * TOPICS.length);
  const joinMs = performance.now() - joinStart;
  const nodeCpu1 = nodeCpuMs();
  const trips1 = store?.roundTrips ?? 0;
  const commands1 = await commandsProcessed();
  const redisCpu1 = await redisCpuMs(admin);

  // A second node's view: how long one full list of N takes.
  let listMs;
  if (engine === "redis") {
    const other = new RedisPresenceStore({ url, prefix, log });
    const viewer = new PresenceRegistry({ publish: async () => {}, log, store: other });
    await viewer.start();
    const t = performance.now();
    const listed = await viewer.list();
    listMs = performance.now() - t;
    if (listed.length !== N * TOPICS.length) throw new Error(`the other node listed ${listed.length}`);
    await viewer.close();
  }

  const leaveStart = performance.now();
  for (let i = 0; i < N; i++) {
    leaves[i]();
    if ((i + 1) % perTurn === 0) await nextTurn();
  }
  await until("leaves announced", () => announced, 2 * N * TOPICS.length);
  const leaveMs = performance.now() - leaveStart;
  const nodeCpu2 = nodeCpuMs();
  const trips2 = store?.roundTrips ?? 0;
  const commands2 = await commandsProcessed();
  const redisCpu2 = await redisCpuMs(admin);
  await presence.close();
  await broker?.close();
  return {
    joinMs,
    leaveMs,
    listMs,
    // INFO itself is one command per reading.
    joinCommands: (commands1 - commands0 - 1) / N,
    leaveCommands: (commands2 - commands1 - 1) / N,
    joinTrips: (trips1 - trips0) / N,
    // CPU per 1,000 joins (then leaves): this process (registry, broker client, harness) and redis-server.
    joinNodeCpu: ((nodeCpu1 - nodeCpu0) / N) * 1000,
    leaveNodeCpu: ((nodeCpu2 - nodeCpu1) / N) * 1000,
    joinRedisCpu: ((redisCpu1 - redisCpu0) / N) * 1000,
    leaveRedisCpu: ((redisCpu2 - redisCpu1) / N) * 1000,
    leaveTrips: (trips2 - trips1) / N,
  };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (x, digits = 0) =>
  x === undefined ? "–" : x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });

const loadBefore = loadavg()
  .map((l) => l.toFixed(2))
  .join(" ");
const rows = [];
for (const perTurn of PER_TURN) {
  for (const [engine, updates] of [
    ["local", "none"],
    ["local", "broker"],
    ["redis", "none"],
    ["redis", "broker"],
  ]) {
    const runs = [];
    for (let r = 0; r < REPEAT; r++) runs.push(await storm({ engine, updates, perTurn }));
    const m = (key) => median(runs.map((run) => run[key]).filter((v) => v !== undefined));
    const redis = engine === "redis";
    rows.push(
      [
        perTurn,
        redis ? "Redis (cluster-wide)" : "local",
        updates === "none" ? "counted only" : redis ? "RedisBroker" : "MemoryBroker",
        fmt(m("joinMs")),
        fmt(m("joinNodeCpu")),
        redis ? fmt(m("joinRedisCpu")) : "–",
        redis ? fmt(m("joinTrips"), 3) : "–",
        redis ? fmt(m("joinCommands"), 3) : "–",
        fmt(m("leaveMs")),
        fmt(m("leaveNodeCpu")),
        redis ? fmt(m("leaveRedisCpu")) : "–",
        redis ? fmt(m("leaveTrips"), 3) : "–",
        redis ? fmt(m("leaveCommands"), 3) : "–",
        fmt(m("listMs")),
      ].join(" | "),
    );
  }
}
const loadAfter = loadavg()
  .map((l) => l.toFixed(2))
  .join(" ");

console.log(`N = ${N.toLocaleString("en-US")} subscribers, ${TOPICS.length} selector each; median of ${REPEAT} runs.`);
console.log(
  `Machine: ${cpus()[0]?.model}, ${cpus().length} cores; Node.js ${process.version}; private redis-server on loopback.`,
);
console.log(`Load average (1, 5, 15 min): ${loadBefore} before, ${loadAfter} after.\n`);
console.log(
  "| joins per turn | registry | updates published to | N joins, wall (ms) | Node CPU ms per 1,000 joins | Redis CPU ms per 1,000 joins | Redis round trips per join | Redis commands per join | N leaves, wall (ms) | Node CPU ms per 1,000 leaves | Redis CPU ms per 1,000 leaves | round trips per leave | commands per leave | list of N from another node (ms) |",
);
console.log(`|${" --- |".repeat(14)}`);
for (const row of rows) console.log(`| ${row} |`);

await redis.stop();
