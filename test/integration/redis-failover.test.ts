import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type HeraldProcess, runHerald } from "../helpers/process.js";
import { publishTo } from "../helpers/publish.js";
import { uniquePrefix } from "../helpers/redis.js";
import {
  type RedisServer,
  redisCall,
  type Sentinels,
  startRedisServer,
  startSentinels,
} from "../helpers/redis-server.js";
import { startServer } from "../helpers/server.js";
import { type OpenStream, openStream } from "../helpers/stream.js";
import { startTcpProxy } from "../helpers/tcp-proxy.js";
import { waitFor } from "../helpers/wait.js";

const running: HeraldProcess[] = [];
const streams: OpenStream[] = [];
afterEach(() => {
  for (const s of streams.splice(0)) s.close();
  for (const p of running.splice(0)) p.child.kill("SIGKILL");
});

/** What an EventSource does: follows one feed across reconnects, resuming with the last id it saw. */
async function follow(url: string): Promise<{ ids: string[]; types: string[] }> {
  const seen = { ids: [] as string[], types: [] as string[] };
  let lastId: string | undefined;
  const open = async (): Promise<void> => {
    const stream = await openStream(`${url}/events?topic=f`, lastId === undefined ? {} : { "last-event-id": lastId });
    streams.push(stream);
    let taken = 0;
    await stream.until("the stream to open", (s) => s.retry !== undefined);
    const poll = setInterval(() => {
      for (const event of stream.events.slice(taken)) {
        seen.types.push(event.type);
        if (event.type === "message") seen.ids.push(event.lastEventId);
        lastId = event.lastEventId;
      }
      taken = stream.events.length;
      if (stream.ended && streams.includes(stream)) {
        clearInterval(poll);
        streams.splice(streams.indexOf(stream), 1);
        void open().catch(() => {});
      }
    }, 20);
  };
  await open();
  return seen;
}

describe("a Herald cluster on Redis Sentinel, through a failover", () => {
  let primary: RedisServer;
  let replicas: RedisServer[];
  let sentinels: Sentinels;
  beforeAll(async () => {
    primary = await startRedisServer(false);
    replicas = [
      await startRedisServer(false, { replicaOf: primary.port }),
      await startRedisServer(false, { replicaOf: primary.port }),
    ];
    sentinels = await startSentinels(primary.port, { downAfterMs: 1_000, failoverTimeoutMs: 5_000, replicas: 2 });
  }, 60_000);
  afterAll(async () => {
    await sentinels?.stop();
    for (const server of [primary, ...(replicas ?? [])]) await server?.kill();
  });

  it("keeps every acknowledged event, delivers it on every node in order, and publishes again in bounded time", async () => {
    const prefix = uniquePrefix();
    const env = {
      BROKER: "redis",
      REDIS_SENTINELS: sentinels.list,
      REDIS_MASTER_NAME: sentinels.masterName,
      REDIS_PREFIX: prefix,
      REDIS_WAIT_REPLICAS: "1",
      REDIS_WAIT_TIMEOUT_MS: "1000",
      LOG_LEVEL: "info",
    };
    const nodes = [runHerald(env), runHerald(env)];
    running.push(...nodes);
    const urls = await Promise.all(nodes.map((n) => n.url));
    const followers = [];
    for (const url of urls) followers.push(await follow(url), await follow(url));

    // Each publisher retries a refused publish with the same id until it is acknowledged.
    const acked: string[] = [];
    let killedAt: number | undefined;
    let firstAckAfterKill: number | undefined;
    let ackedAfterKill = 0;
    const refusals = new Map<string, number>();
    /** Ids whose publish got no 201 at least once: stored or not, their retry may store them again. */
    const unanswered = new Set<string>();
    let lastRefusal: string | undefined;
    const deadline = Date.now() + 60_000;
    const publisher = async (w: number) => {
      for (let i = 0; ackedAfterKill < 40 && Date.now() < deadline; i++) {
        const id = `ev-${w}-${i}`;
        for (;;) {
          const sentAt = Date.now();
          const res = await publishTo(urls[w % 2] as string, { topic: "f", data: id, id }).catch(() => undefined);
          if (res?.status === 201 || res?.status === 200) {
            acked.push(id);
            if (killedAt !== undefined && sentAt > killedAt) {
              firstAckAfterKill ??= Date.now() - killedAt;
              ackedAfterKill++;
            }
            break;
          }
          expect([undefined, 503]).toContain(res?.status);
          unanswered.add(id);
          refusals.set(res?.json.code ?? "no answer", (refusals.get(res?.json.code ?? "no answer") ?? 0) + 1);
          lastRefusal = res?.json.message;
          if (Date.now() > deadline) return;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }
    };
    const publishing = Promise.all([0, 1, 2, 3].map(publisher));
    await waitFor("publishing to be under way", () => acked.length >= 50, 20_000);
    killedAt = Date.now();
    await primary.kill();
    await publishing;
    const said = () =>
      nodes.map((n) =>
        n
          .stdout()
          .split("\n")
          .filter((line) => !line.includes('"reqId"')),
      );
    if (firstAckAfterKill === undefined) console.log({ refusals, lastRefusal }, said());
    expect(firstAckAfterKill).toBeDefined();
    console.log(`failover: first 201 ${firstAckAfterKill} ms after kill -9 of the primary`);

    const newPrimary = await sentinels.primaryPort();
    expect(newPrimary).not.toBe(primary.port);
    const entries = (await redisCall(newPrimary as number, "XRANGE", `${prefix}:events`, "-", "+")) as [
      string,
      string[],
    ][];
    const history = entries.map(([, fields]) => fields[fields.indexOf("p") + 1] as string);
    for (const id of acked) expect(history).toContain(id);
    try {
      for (const seen of followers) {
        await waitFor("every stored event to reach the subscriber", () => seen.ids.length >= history.length, 20_000);
        expect(seen.types).not.toContain("reset");
        // An event that the failover lost after its delivery, and that its publisher's retry stored
        // again, is delivered once more: history's order is that of each event's last delivery.
        const last = seen.ids.filter((id, k) => seen.ids.indexOf(id, k + 1) === -1);
        expect(last).toEqual(history);
        // Only such an event, and only once more.
        const again = seen.ids.filter((id, k) => seen.ids.indexOf(id) !== k);
        for (const id of again) expect(unanswered).toContain(id);
        expect(new Set(again).size).toBe(again.length);
      }
    } catch (err) {
      // What the nodes said, for whoever reads a failure.
      const said = nodes.map((n) =>
        n
          .stdout()
          .split("\n")
          .filter((line) => !line.includes('"reqId"')),
      );
      console.log({ acked: acked.length, history: history.length, seen: followers.map((f) => f.ids.length) }, said);
      throw err;
    }
  }, 120_000);
});

describe("a failover that loses events a node has already delivered", () => {
  it("resumes their clients after the newest event that survived: a later event is never skipped", async () => {
    // The replica reaches the primary through a proxy that the Sentinels monitor as the primary
    // itself: freezing only the replication link keeps the replica from getting `x`, while the
    // node, through the same proxy, stores and delivers it.
    const primary = await startRedisServer(false);
    const proxy = await startTcpProxy(primary.port);
    const replica = await startRedisServer(false, { replicaOf: proxy.port });
    const sentinels = await startSentinels(proxy.port, { downAfterMs: 1_000, failoverTimeoutMs: 5_000, replicas: 1 });
    try {
      const node = runHerald({
        BROKER: "redis",
        REDIS_SENTINELS: sentinels.list,
        REDIS_MASTER_NAME: sentinels.masterName,
        REDIS_PREFIX: "r",
        REDIS_WAIT_REPLICAS: "1",
        REDIS_WAIT_TIMEOUT_MS: "300",
        LOG_LEVEL: "info",
      });
      running.push(node);
      const url = await node.url;
      const seen = await follow(url);
      await waitFor(
        "a to be acknowledged",
        async () => (await publishTo(url, { topic: "f", data: "a", id: "a" })).status === 201,
        20_000,
      );
      await waitFor("a to be delivered", () => seen.ids.includes("a"));
      proxy.freeze("replication");
      // Stored on the primary and delivered at once, but no replica holds it: its outcome is unknown.
      expect((await publishTo(url, { topic: "f", data: "x", id: "x" })).status).toBe(503);
      await waitFor("x to be delivered", () => seen.ids.includes("x"));
      await primary.kill();
      await proxy.close();
      await waitFor(
        "the Sentinels to promote the replica",
        async () => (await sentinels.primaryPort()) === replica.port,
        30_000,
      );
      // e, then the publisher's retry of x: the new primary holds a, e, x.
      for (const data of ["e", "x"]) {
        await waitFor(
          `${data} to be stored`,
          async () => {
            const res = await publishTo(url, { topic: "f", data, id: data }).catch(() => undefined);
            return res !== undefined && (res.status === 201 || res.json.code === "HERALD_PUBLISH_OUTCOME_UNKNOWN");
          },
          20_000,
        );
      }
      const entries = (await redisCall(replica.port, "XRANGE", "r:events", "-", "+")) as [string, string[]][];
      expect(entries.map(([, fields]) => fields[fields.indexOf("p") + 1])).toEqual(["a", "e", "x"]);
      // The follower resumed with x, which is no longer where it saw it: it gets e, and x again.
      await waitFor("e to be delivered", () => seen.ids.includes("e"), 20_000);
      await waitFor("x to be delivered again", () => seen.ids.length === 4);
      expect(seen.ids).toEqual(["a", "x", "e", "x"]);
      expect(seen.types).not.toContain("reset");
    } finally {
      await sentinels.stop();
      await replica.kill();
      await primary.kill();
    }
  }, 90_000);
});

describe("REDIS_WAIT_REPLICAS", () => {
  let primary: RedisServer;
  let replica: RedisServer | undefined;
  beforeAll(async () => {
    primary = await startRedisServer(false);
  });
  afterAll(async () => {
    await replica?.kill();
    await primary.kill();
  });

  it("answers 201 only once a replica holds the event; before that, 503 with the id whose retry is safe", async () => {
    const prefix = uniquePrefix();
    const server = await startServer({
      broker: "redis",
      redisUrl: primary.url,
      redisPrefix: prefix,
      redisWaitReplicas: 1,
      // Long enough for a replica on a loaded machine, short enough for the test.
      redisWaitTimeoutMs: 1_000,
    });
    try {
      const alone = await publishTo(server.url, { topic: "f", data: "replicated?" });
      expect(alone.status).toBe(503);
      expect(alone.json).toMatchObject({
        code: "HERALD_PUBLISH_OUTCOME_UNKNOWN",
        message: expect.stringContaining("Only 0 of the 1 replicas that REDIS_WAIT_REPLICAS asks for"),
      });
      expect(alone.json.message).toMatch(/it is then stored exactly once$/);
      const id = (alone.json as { id: string }).id;

      replica = await startRedisServer(false, { replicaOf: primary.port });
      // Once the replica has synced, the retry finds the event the primary kept, and is acknowledged.
      const retried = await waitFor(
        "a retry to be acknowledged",
        async () => {
          const res = await publishTo(server.url, { topic: "f", data: "replicated?", id });
          return res.status === 503 ? undefined : res;
        },
        15_000,
      );
      expect(retried.status).toBe(201);
      expect(retried.json).toMatchObject({ duplicate: true });
      expect((await publishTo(server.url, { topic: "f", data: "next" })).status).toBe(201);
      const entries = (await redisCall(replica.port, "XRANGE", `${prefix}:events`, "-", "+")) as [string, string[]][];
      expect(entries.map(([, fields]) => fields[fields.indexOf("d") + 1])).toEqual(["replicated?", "next"]);
    } finally {
      await server.close();
    }
  });
});
