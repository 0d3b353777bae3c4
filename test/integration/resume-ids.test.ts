import { mkdtempSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EventSource } from "eventsource";
import { request } from "undici";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import type { Config } from "../../src/config.js";
import { deleteKeys, redisSettings } from "../helpers/redis.js";
import { startServer, type TestServer } from "../helpers/server.js";
import { openStream } from "../helpers/stream.js";
import { waitFor } from "../helpers/wait.js";

const servers: TestServer[] = [];
async function start(overrides: Partial<Config> = {}) {
  const server = await startServer(overrides);
  servers.push(server);
  return server;
}
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function publishRaw(server: TestServer, body: Record<string, unknown>) {
  const res = await request(`${server.url}/events`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.statusCode, body: (await res.body.json()) as { code?: string; message?: string; id?: string } };
}

const prefixes: string[] = [];
afterAll(async () => {
  await Promise.all(prefixes.map((prefix) => deleteKeys(prefix)));
});
const engines: [string, () => Partial<Config>][] = [
  ["memory", () => ({ broker: "memory" })],
  ["sqlite", () => ({ broker: "sqlite", databasePath: join(mkdtempSync(join(tmpdir(), "herald-ids-")), "h.db") })],
  ["redis", () => redisSettings(prefixes)],
];

describe.each(engines)("a publisher id that left history (%s broker)", (_name, engine) => {
  it("cannot name a new event, so a resume from it is a reset, never a silent skip", async () => {
    const server = await start({ ...engine(), historySize: 3 });
    await server.publish({ topic: "t", data: "first", id: "order-1" });
    for (let i = 0; i < 3; i++) await server.publish({ topic: "t", data: `${i}` });
    const reuse = await publishRaw(server, { topic: "t", data: "again", id: "order-1" });
    expect(reuse.status).toBe(409);
    expect(reuse.body.code).toBe("HERALD_ID_RETIRED");
    expect(reuse.body.message).toContain("choose a new id");
    for (let i = 3; i < 9; i++) await server.publish({ topic: "t", data: `${i}` });

    // The client saw order-1 and was away since: it must learn that it missed events.
    const stream = await openStream(`${server.url}/events?topic=t`, { "last-event-id": "order-1" });
    const [first] = await stream.take(1);
    expect(first?.type).toBe("reset");
    stream.close();
  });
});

describe("the reset of an empty history", () => {
  it("carries the id earliest, from which the real EventSource client resumes without losing an event", async () => {
    const server = await start({ retryMs: 50 });
    const requests: { lastEventId: string | undefined; socket: Socket }[] = [];
    server.app.server.on("request", (req: IncomingMessage) => {
      if (req.method === "GET" && req.url?.startsWith("/events")) {
        requests.push({ lastEventId: req.headers["last-event-id"] as string | undefined, socket: req.socket });
      }
    });
    // The reconnect waits until the event is published, so the event can only come from the replay.
    let published: () => void = () => {};
    const publishedWhileAway = new Promise<void>((resolve) => {
      published = resolve;
    });
    let attempts = 0;
    const source = new EventSource(`${server.url}/events?topic=t&lastEventId=from-another-run`, {
      fetch: async (url, init) => {
        if (attempts++ > 0) await publishedWhileAway;
        return fetch(url, init);
      },
    });
    const seen: { type: string; id: string; data: string }[] = [];
    source.addEventListener("reset", (e) => seen.push({ type: "reset", id: e.lastEventId, data: e.data }));
    source.onmessage = (e) => seen.push({ type: "message", id: e.lastEventId, data: e.data });
    try {
      await waitFor("the reset", () => seen.length === 1);
      expect(seen[0]).toMatchObject({ type: "reset", id: "earliest" });
      requests[0]?.socket.destroy();
      await waitFor("the server to see the cut", async () => (await server.stats()).connections === 0);
      const { id } = await server.publish({ topic: "t", data: "while away" });
      published();
      await waitFor("the event, after the reconnect", () => seen.length === 2, 10_000);
      expect(seen[1]).toEqual({ type: "message", id, data: "while away" });
      expect(requests.map((r) => r.lastEventId)).toEqual([undefined, "earliest"]);
    } finally {
      source.close();
    }
  });

  it("refuses earliest as a publisher id, and resumes from earliest with everything retained", async () => {
    const server = await start();
    const refused = await publishRaw(server, { topic: "t", data: "x", id: "earliest" });
    expect(refused.status).toBe(400);
    expect(refused.body.message).toContain("earliest");
    const ids: string[] = [];
    for (const topic of ["t", "u", "t"]) ids.push((await server.publish({ topic, data: topic })).id);
    const stream = await openStream(`${server.url}/events?topic=t`, { "last-event-id": "earliest" });
    const events = await stream.take(2);
    expect(events.map((e) => e.lastEventId)).toEqual([ids[0], ids[2]]);
    expect((await server.stats()).resets).toBe(0);
    stream.close();
  });
});
