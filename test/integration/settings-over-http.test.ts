import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import type { Config } from "../../src/config.js";
import { type HeraldProcess, runHerald } from "../helpers/process.js";
import { publishTo } from "../helpers/publish.js";
import { startServer, type TestServer } from "../helpers/server.js";
import { type OpenStream, openStream } from "../helpers/stream.js";
import { waitFor } from "../helpers/wait.js";

const servers: TestServer[] = [];
const processes: HeraldProcess[] = [];
afterEach(async () => {
  for (const p of processes.splice(0)) p.child.kill("SIGKILL");
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function start(overrides: Partial<Config>): Promise<TestServer> {
  const server = await startServer(overrides);
  servers.push(server);
  return server;
}

/**
 * The first event of a stream resumed from `lastEventId`: a replayed event, or a `reset`; undefined
 * when the server ends the stream first, as it does when history is trimmed past the resume while
 * its replay is read (the client's next resume then gets the `reset`).
 */
async function firstAfter(url: string, lastEventId: string, topic = "t") {
  const stream = await openStream(`${url}/events?topic=${topic}`, { "last-event-id": lastEventId });
  await stream.until("an event, or the end of the stream", (s) => s.events.length > 0 || s.ended, 10_000);
  stream.close();
  return stream.events[0];
}

/** Long enough that the two publishes and the first resume fit in it on a loaded CI machine. */
const TTL_S = 3;

describe("HISTORY_TTL_S", () => {
  it("takes events out of history once they are older, through buildApp", async () => {
    const server = await start({ historyTtlS: TTL_S });
    const old = await server.publish({ topic: "t", data: "old" });
    await server.publish({ topic: "t", data: "next" });
    // Fresh: the id is found and what follows it replays.
    expect(await firstAfter(server.url, old.id)).toMatchObject({ type: "message", data: "next" });
    await waitFor(
      "the first event to expire",
      async () => (await firstAfter(server.url, old.id))?.type === "reset",
      TTL_S * 1000 + 5_000,
    );
  });

  it("is read from the environment by the process, for the SQLite broker too", async () => {
    const dir = mkdtempSync(join(tmpdir(), "herald-ttl-"));
    const envs: Record<string, string>[] = [
      { HISTORY_TTL_S: String(TTL_S) },
      { HISTORY_TTL_S: String(TTL_S), BROKER: "sqlite", DATABASE_PATH: join(dir, "h.db") },
    ];
    for (const env of envs) {
      const herald = runHerald(env);
      processes.push(herald);
      const url = await herald.url;
      const old = await publishTo(url, { topic: "t", data: "old" });
      await publishTo(url, { topic: "t", data: "next" });
      expect(await firstAfter(url, old.json.id as string)).toMatchObject({ type: "message", data: "next" });
      await waitFor(
        "the first event to expire",
        async () => (await firstAfter(url, old.json.id as string))?.type === "reset",
        TTL_S * 1000 + 5_000,
      );
    }
  });
});

describe("CORS_ORIGIN as a list", () => {
  it("answers each listed origin with itself, and gives any other origin no CORS header", async () => {
    const server = await start({ corsOrigin: ["https://a.example", "http://b.example:8080"] });
    for (const origin of ["https://a.example", "http://b.example:8080"]) {
      const preflight = await request(`${server.url}/events`, {
        method: "OPTIONS",
        headers: { origin, "access-control-request-method": "GET", "access-control-request-headers": "last-event-id" },
      });
      await preflight.body.dump();
      expect(preflight.statusCode).toBe(204);
      expect(preflight.headers["access-control-allow-origin"]).toBe(origin);
      expect(String(preflight.headers["access-control-allow-headers"]).toLowerCase()).toContain("last-event-id");
      const stream = await openStream(`${server.url}/events`, { origin });
      expect(stream.headers["access-control-allow-origin"]).toBe(origin);
      stream.close();
    }
    const stranger = await openStream(`${server.url}/events`, { origin: "https://evil.example" });
    expect(stranger.headers["access-control-allow-origin"]).toBeUndefined();
    stranger.close();
    const publish = await request(`${server.url}/events`, {
      method: "POST",
      headers: { origin: "https://evil.example", "content-type": "application/json" },
      body: '{"data":1}',
    });
    await publish.body.dump();
    expect(publish.headers["access-control-allow-origin"]).toBeUndefined();
  });
});

describe("TRUST_PROXY", () => {
  /** Opens a stream as `forwardedFor` says; the per-address limit (1) shows which address the server counted. */
  async function asClient(server: TestServer, forwardedFor: string): Promise<OpenStream | number> {
    const stream = await openStream(`${server.url}/events`, { "x-forwarded-for": forwardedFor });
    if (stream.status === 200) return stream;
    stream.close();
    return stream.status;
  }

  it("as a hop count, takes the client from that many proxies back in X-Forwarded-For", async () => {
    // One trusted hop: the socket (127.0.0.1) is the proxy, the last X-Forwarded-For entry is the client.
    const server = await start({ trustProxy: 1, maxConnectionsPerIp: 1 });
    const first = await asClient(server, "198.51.100.9, 203.0.113.1");
    expect(first).not.toBeTypeOf("number");
    // Same last entry, different spoofed first entry: the same client, over its limit.
    expect(await asClient(server, "192.0.2.77, 203.0.113.1")).toBe(429);
    // Another last entry: another client.
    const other = await asClient(server, "198.51.100.9, 203.0.113.2");
    expect(other).not.toBeTypeOf("number");
    for (const s of [first, other]) (s as OpenStream).close();
  });

  it("as CIDRs, trusts X-Forwarded-For only from a proxy inside them", async () => {
    const trusted = await start({ trustProxy: "10.0.0.0/8,127.0.0.0/8", maxConnectionsPerIp: 1 });
    const a = await asClient(trusted, "203.0.113.1");
    const b = await asClient(trusted, "203.0.113.2");
    expect([typeof a, typeof b]).toEqual(["object", "object"]);
    expect(await asClient(trusted, "203.0.113.1")).toBe(429);
    for (const s of [a, b]) (s as OpenStream).close();

    // The socket address (127.0.0.1) is outside these: X-Forwarded-For is ignored, every request is 127.0.0.1.
    const untrusted = await start({ trustProxy: "10.0.0.0/8", maxConnectionsPerIp: 1 });
    const c = await asClient(untrusted, "203.0.113.1");
    expect(c).not.toBeTypeOf("number");
    expect(await asClient(untrusted, "203.0.113.2")).toBe(429);
    (c as OpenStream).close();
  });
});
