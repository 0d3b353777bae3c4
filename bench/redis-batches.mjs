// What Redis and Node spend on batches in the Redis broker, with and without publisher ids (a
// batch without ids is one packed stream entry, its events in a key of their own; with ids, an
// entry per event). Two brokers on one prefix, as two nodes: one publishes, the other's reader
// delivers every event. Against a private redis-server on a free port, so that its CPU counter
// sees this bench only. Per layout: events/s with 4 batches in flight, Redis and Node CPU per
// event (Node: both brokers, publishing and reading back), the time to replay 100,000 events in
// pages of 256 (as the hub reads them), and what a single publish (one at a time) costs Redis once history holds such batches;
// first, what a single publish costs Redis when history holds only single events.
// Run: npm run build && node bench/redis-batches.mjs   (env: BATCHES, SIZE, HERALD_DIST)
// Bounded: BATCHES batches per layout, each phase with a DEADLINE_MS.
import { cpus, loadavg } from "node:os";
import pino from "pino";
import { nodeCpuMs, redisCpuMs, startPrivateRedis } from "./private-redis.mjs";

const dist = process.env.HERALD_DIST ?? new URL("../dist", import.meta.url).pathname;
const { RedisBroker } = await import(`${dist}/broker/redis-broker.js`);

const BATCHES = Number(process.env.BATCHES ?? 400);
const SIZE = Number(process.env.SIZE ?? 500);
const HISTORY = 100_000;
const SINGLES = 4_000;
const SINGLES_ALONE = 30_000;
// The page a replay reads at a time, as the hub does (REPLAY_PAGE_EVENTS).
const PAGE = 256;
const DEADLINE_MS = 120_000;
const log = pino({ level: "silent" });

const redis = await startPrivateRedis();
const { url, admin } = redis;

async function until(what, done) {
  const deadline = Date.now() + DEADLINE_MS;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const payload = "x".repeat(48);
let drawn = 0;
/** A batch of SIZE events of about 70 bytes of data each; with ids, each event has one of its own. */
function batchOf(withIds) {
  return Array.from({ length: SIZE }, (_, i) => {
    const event = { topic: "https://example.com/feed", data: `{"n":${i},"payload":"${payload}"}` };
    return withIds ? { ...event, id: `e-${drawn++}` } : event;
  });
}

async function measure(layout, withIds) {
  const prefix = `bench-${layout.replace(/\W+/g, "-")}`;
  const options = { url, prefix, historySize: HISTORY, log };
  const publisher = await RedisBroker.connect(options);
  const other = await RedisBroker.connect(options);
  let seen = 0;
  await other.subscribe(
    () => seen++,
    () => {
      throw new Error("the reader reported a gap");
    },
  );
  for (let i = 0; i < 20; i++) await publisher.publishBatch(batchOf(withIds));
  await until("the warm-up deliveries", () => seen === 20 * SIZE);

  const events = BATCHES * SIZE;
  const [redis0, node0, t0] = [await redisCpuMs(admin), nodeCpuMs(), performance.now()];
  for (let i = 0; i < BATCHES; i += 4) {
    const inFlight = Math.min(4, BATCHES - i);
    await Promise.all(Array.from({ length: inFlight }, () => publisher.publishBatch(batchOf(withIds))));
  }
  await until("every delivery", () => seen === (20 + BATCHES) * SIZE);
  const seconds = (performance.now() - t0) / 1000;
  const [redis1, node1] = [await redisCpuMs(admin), nodeCpuMs()];

  const r0 = performance.now();
  let replayed = 0;
  for (let pos = "", page = await publisher.read(pos, PAGE); page.length > 0; page = await publisher.read(pos, PAGE)) {
    replayed += page.length;
    pos = page.at(-1).pos;
  }
  const replaySeconds = (performance.now() - r0) / 1000;

  // One at a time: publishes of one turn would go to Redis together (one call).
  const s0 = await redisCpuMs(admin);
  for (let i = 0; i < SINGLES; i++) await publisher.publish({ topic: "t", data: "single" });
  const singleUs = (1000 * ((await redisCpuMs(admin)) - s0)) / SINGLES;
  await until("the singles' deliveries", () => seen === (20 + BATCHES) * SIZE + SINGLES);
  await publisher.close();
  await other.close();
  return {
    layout,
    rate: Math.round(events / seconds),
    redisUs: ((1000 * (redis1 - redis0)) / events).toFixed(2),
    nodeUs: ((1000 * (node1 - node0)) / events).toFixed(2),
    replay: `${replayed.toLocaleString("en-US")} in ${replaySeconds.toFixed(2)} s`,
    singleUs: singleUs.toFixed(1),
  };
}

/**
 * Single publishes without id on a fresh prefix with history full (HISTORY_SIZE 1,000): one at a
 * time (a script call each), and 16 per turn of the event loop, which go to Redis as one call.
 */
async function singles() {
  const lines = [];
  for (const perTurn of [1, 16]) {
    const publisher = await RedisBroker.connect({ url, prefix: `bench-singles-${perTurn}`, historySize: 1_000, log });
    const publish = async (count) => {
      for (let i = 0; i < count; i += perTurn) {
        await Promise.all(Array.from({ length: perTurn }, () => publisher.publish({ topic: "t", data: payload })));
      }
    };
    await publish(2_000);
    const [redis0, t0] = [await redisCpuMs(admin), performance.now()];
    await publish(SINGLES_ALONE);
    const seconds = (performance.now() - t0) / 1000;
    const redisUs = (1000 * ((await redisCpuMs(admin)) - redis0)) / SINGLES_ALONE;
    await publisher.close();
    const how = perTurn === 1 ? "one at a time" : `${perTurn} per turn of the event loop (one call to Redis)`;
    lines.push(
      `Single publishes without id, ${how}, history full (HISTORY_SIZE 1,000): ${Math.round(SINGLES_ALONE / seconds).toLocaleString("en-US")}/s, ${redisUs.toFixed(1)} µs of Redis CPU per publish`,
    );
  }
  return lines.join("\n");
}

try {
  const alone = await singles();
  const rows = [await measure("without ids (packed)", false), await measure("with an id per event", true)];
  console.log(
    `Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model}, load ${loadavg()[0]?.toFixed(2)}, ` +
      `${BATCHES} batches of ${SIZE} per layout, 4 in flight, HISTORY_SIZE ${HISTORY.toLocaleString("en-US")}\n`,
  );
  console.log(
    "| batch layout | events/s | Redis CPU µs/event | Node CPU µs/event | replay (pages of 256) | Redis CPU µs per single publish after |",
  );
  console.log("|---|---|---|---|---|---|");
  for (const r of rows) {
    console.log(
      `| ${r.layout} | ${r.rate.toLocaleString("en-US")} | ${r.redisUs} | ${r.nodeUs} | ${r.replay} | ${r.singleUs} |`,
    );
  }
  console.log(`\n${alone}`);
} finally {
  await redis.stop();
}
