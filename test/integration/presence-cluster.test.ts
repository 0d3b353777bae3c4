import { type ChildProcess, spawn } from "node:child_process";
import { resolve } from "node:path";
import { Redis } from "ioredis";
import { afterEach, describe, expect, it } from "vitest";
import { RedisBroker } from "../../src/broker/redis-broker.js";
import { PresenceRegistry } from "../../src/mercure/presence.js";
import { RedisPresenceStore, type RedisPresenceStoreOptions } from "../../src/mercure/presence-redis.js";
import {
  getSubscriptions,
  type PresenceApp,
  startPresenceApp,
  subscriptionUpdates,
  watchEverything,
} from "../helpers/presence.js";
import { deleteKeys, REDIS_URL, uniquePrefix } from "../helpers/redis.js";
import { silentLogger } from "../helpers/server.js";
import type { OpenStream } from "../helpers/stream.js";
import { waitFor } from "../helpers/wait.js";

const PATH = "/.well-known/mercure/subscriptions";
/** What docs/presence.md promises: a dead node's subscribers leave lists, and are announced ended, within this. */
const DEAD_NODE_BOUND_MS = 10_000;

const apps: PresenceApp[] = [];
const streams: OpenStream[] = [];
const children: ChildProcess[] = [];
const prefixes: string[] = [];
afterEach(async () => {
  for (const child of children.splice(0)) child.kill("SIGKILL");
  for (const s of streams.splice(0)) s.close();
  for (const app of apps.splice(0)) await app.close();
  for (const prefix of prefixes.splice(0)) await deleteKeys(prefix);
});

/** One in-process Herald node of the cluster under `prefix`: its own broker and registry connections. */
async function node(prefix: string, timing: Partial<RedisPresenceStoreOptions> = {}): Promise<PresenceApp> {
  const broker = await RedisBroker.connect({ url: REDIS_URL, prefix, historySize: 10_000, log: silentLogger });
  const store = new RedisPresenceStore({ url: REDIS_URL, prefix, log: silentLogger, ...timing });
  const app = await startPresenceApp(broker, store);
  apps.push(app);
  return app;
}

function cluster(): string {
  const prefix = uniquePrefix();
  prefixes.push(prefix);
  return prefix;
}

async function watch(url: string): Promise<OpenStream> {
  const stream = await watchEverything(url);
  streams.push(stream);
  return stream;
}

async function subscribers(url: string): Promise<string[]> {
  const { json } = await getSubscriptions(`${url}${PATH}`);
  return (json as { subscriptions: { id: string }[] }).subscriptions.map((s) => s.id).sort();
}

const ids = (subscriber: string, topics: string[]) =>
  topics.map((t) => `${PATH}/${encodeURIComponent(t)}/${encodeURIComponent(subscriber)}`).sort();

describe("presence across a Redis cluster", () => {
  it("lists every node's subscribers on every node, and announces them on every node", async () => {
    const prefix = cluster();
    const [a, b] = [await node(prefix), await node(prefix)] as [PresenceApp, PresenceApp];
    const watcher = await watch(a.url);
    a.presence.join({ subscriber: "urn:uuid:ann", topics: ["news"] });
    const leaveBob = b.presence.join({ subscriber: "urn:uuid:bob", topics: ["news", "sport"], payload: { n: 2 } });
    const all = [...ids("urn:uuid:ann", ["news"]), ...ids("urn:uuid:bob", ["news", "sport"])].sort();
    for (const { url } of [a, b]) {
      await waitFor(`every subscription on ${url}`, async () => (await subscribers(url)).join() === all.join());
    }
    const one = await getSubscriptions(`${a.url}${PATH}/sport/urn%3Auuid%3Abob`);
    expect(one.status).toBe(200);
    expect(one.json).toMatchObject({ subscriber: "urn:uuid:bob", topic: "sport", payload: { n: 2 } });

    leaveBob();
    await waitFor(
      "bob to leave a's list",
      async () => (await subscribers(a.url)).join() === ids("urn:uuid:ann", ["news"]).join(),
    );
    // b's updates reach a's streams: they go through the shared broker.
    await watcher.until(
      "bob's four updates",
      (s) => subscriptionUpdates(s).filter((u) => u.document.subscriber === "urn:uuid:bob").length === 4,
    );
    await watcher.until("ann's update too", (s) => subscriptionUpdates(s).length === 5);
    // lastEventID (and the ETag) is the cluster's newest event, wherever it was published.
    const newest = watcher.events.at(-1)?.lastEventId;
    const listed = await getSubscriptions(`${a.url}${PATH}`);
    expect(listed.json).toMatchObject({ lastEventID: newest });
    expect(listed.headers.etag).toBe(newest);
  });

  it("shows a change on every node's list before it publishes the update announcing it", async () => {
    const prefix = cluster();
    const a = await node(prefix);
    const seen: string[] = [];
    const b = new PresenceRegistry({
      // When b announces, ask a (another node, over Redis) whether the change is visible yet.
      publish: async (input) => {
        const active = (JSON.parse(input.data) as { active: boolean }).active;
        const listed = (await a.presence.list({ subscriber: "urn:uuid:bob" })).length > 0;
        seen.push(`${active ? "start" : "end"}: ${listed ? "listed" : "not listed"}`);
      },
      log: silentLogger,
      store: new RedisPresenceStore({ url: REDIS_URL, prefix, log: silentLogger }),
    });
    await b.start();
    try {
      const leave = b.join({ subscriber: "urn:uuid:bob", topics: ["news"] });
      await waitFor("the start", () => seen.length === 1);
      leave();
      await waitFor("the end", () => seen.length === 2);
      expect(seen).toEqual(["start: listed", "end: not listed"]);
    } finally {
      await b.close();
    }
  });

  it("drops a killed node's subscribers from the lists and announces their end once, within the bound", async () => {
    const prefix = cluster();
    const [a, c] = [await node(prefix), await node(prefix)] as [PresenceApp, PresenceApp];
    const watcher = await watch(a.url);
    const doomed = ["urn:uuid:d1", "urn:uuid:d2", "urn:uuid:d3"];
    const topics = ["news", "https://example.com/books/{id}"];
    const child = spawn(process.execPath, [resolve("test/helpers/presence-node.mjs")], {
      env: { ...process.env, REDIS_URL, REDIS_PREFIX: prefix, SUBSCRIBERS: doomed.join(","), TOPICS: topics.join(",") },
      stdio: ["ignore", "pipe", "inherit"],
    });
    children.push(child);
    let output = "";
    child.stdout?.on("data", (chunk) => {
      output += chunk;
    });
    const doomedNode = await waitFor("the child node", () => /joined (\S+)/.exec(output)?.[1], 20_000);
    const doomedIds = doomed.flatMap((d) => ids(d, topics)).sort();
    const survivor = c.presence.join({ subscriber: "urn:uuid:alive", topics: ["news"] });
    for (const { url } of [a, c]) {
      await waitFor(`the child's subscriptions on ${url}`, async () => {
        const listed = await subscribers(url);
        return doomedIds.every((id) => listed.includes(id));
      });
    }
    const ended = (s: OpenStream) => subscriptionUpdates(s).filter((u) => u.document.active === false);
    await watcher.until("the child's announcements", (s) => subscriptionUpdates(s).length >= doomedIds.length + 1);
    expect(ended(watcher)).toHaveLength(0);

    child.kill("SIGKILL");
    const killedAt = Date.now();
    await waitFor(
      "the killed node's subscribers to leave a's list",
      async () => !(await subscribers(a.url)).some((id) => doomedIds.includes(id)),
      DEAD_NODE_BOUND_MS,
    );
    const leftListAfterMs = Date.now() - killedAt;
    await watcher.until(
      "an active:false update for each of them",
      (s) => ended(s).length >= doomedIds.length,
      Math.max(1, DEAD_NODE_BOUND_MS - (Date.now() - killedAt)),
    );
    const announcedAfterMs = Date.now() - killedAt;
    expect(leftListAfterMs).toBeLessThanOrEqual(DEAD_NODE_BOUND_MS);
    expect(announcedAfterMs).toBeLessThanOrEqual(DEAD_NODE_BOUND_MS);
    expect(await subscribers(c.url)).toEqual(ids("urn:uuid:alive", ["news"]));

    // Once: the claim removed the dead node and its hash, so no survivor can claim it again; any
    // update already published reaches the watcher before this marker does.
    const redis = new Redis(REDIS_URL);
    try {
      expect(await redis.zscore(`${prefix}:presence:nodes`, doomedNode)).toBeNull();
      expect(await redis.exists(`${prefix}:presence:node:${doomedNode}`)).toBe(0);
    } finally {
      redis.disconnect();
    }
    const marker = await a.broker.publish({ topic: "marker", data: "m" });
    await watcher.until("the marker", (s) => s.events.some((e) => e.lastEventId === marker.event.id));
    expect(
      ended(watcher)
        .map((u) => u.document.id)
        .sort(),
    ).toEqual(doomedIds);
    for (const u of ended(watcher)) expect(u.document).toMatchObject({ active: false, payload: { node: "doomed" } });
    survivor();
    console.info(`killed node: left the list after ${leftListAfterMs} ms, ended after ${announcedAfterMs} ms`);
  }, 40_000);

  it("a node that others declared dead writes its subscribers again and announces them again", async () => {
    const prefix = cluster();
    const timing = { heartbeatMs: 100, ttlMs: 10_000 };
    const [a, b] = [await node(prefix, timing), await node(prefix, timing)] as [PresenceApp, PresenceApp];
    const watcher = await watch(a.url);
    b.presence.join({ subscriber: "urn:uuid:bob", topics: ["news"] });
    const bob = ids("urn:uuid:bob", ["news"]);
    await waitFor("bob on a's list", async () => (await subscribers(a.url)).join() === bob.join());
    await watcher.until("bob's start", (s) => subscriptionUpdates(s).length === 1);

    // What a surviving node's claim does to a node it found dead.
    const redis = new Redis(REDIS_URL);
    try {
      const owner = await waitFor("b's node id", async () => {
        for (const n of await redis.zrange(`${prefix}:presence:nodes`, 0, -1)) {
          if ((await redis.hexists(`${prefix}:presence:node:${n}`, "urn:uuid:bob")) === 1) return n;
        }
        return undefined;
      });
      await redis.multi().zrem(`${prefix}:presence:nodes`, owner).del(`${prefix}:presence:node:${owner}`).exec();
    } finally {
      redis.disconnect();
    }

    await watcher.until("bob announced again", (s) => subscriptionUpdates(s).length === 2);
    expect(subscriptionUpdates(watcher).map((u) => u.document.active)).toEqual([true, true]);
    await waitFor("bob back on a's list", async () => (await subscribers(a.url)).join() === bob.join());
  });
});
