import { connect } from "node:net";
import { request } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import { startServer, type TestServer } from "../helpers/server.js";
import { openStream } from "../helpers/stream.js";
import { expOf, hs256, SECRET } from "../helpers/tokens.js";
import { waitFor } from "../helpers/wait.js";

let server: TestServer;
afterEach(() => server.close());

/** `/stats` with a token that may read it (it needs `*` once SUBSCRIBER_JWT_KEY is set). */
async function stats() {
  const admin = await hs256({ subscribe: ["*"] });
  return server.stats({ authorization: `Bearer ${admin}` });
}

/** Sends a stream request on a raw socket and never reads the answer. */
async function stalledRequest(url: string, path: string, token: string) {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  socket.on("error", () => {});
  await new Promise((resolve) => socket.once("connect", resolve));
  socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`);
  socket.pause();
  return socket;
}

describe("streams the server ends", () => {
  it("take no more writes once ended at token expiry, even when the client never reads the end", async () => {
    server = await startServer({ subscriberJwtKey: SECRET, heartbeatMs: 20, maxSubscriberBufferBytes: 64 * 1_048_576 });
    // A fractional exp, which JWTs allow: the stream must still end.
    // Long enough for a loaded machine to build the backlog first; fractional all the same.
    const token = await hs256({ subscribe: ["*"], expiresInS: 6.5 });
    const stalled = await stalledRequest(server.url, "/events?topic=t", token);
    const idle = await openStream(`${server.url}/events?topic=idle`);
    await waitFor("both streams to open", async () => (await stats()).connections === 2);
    // A backlog the client never reads, so the end the server writes at expiry cannot complete.
    const chunk = "x".repeat(32 * 1024);
    // In rounds of publishes sent together: one at a time, a loaded machine would reach the expiry first.
    for (let round = 0; round < 20 && (await stats()).bufferedBytes < 1_048_576; round++) {
      await Promise.all(Array.from({ length: 16 }, () => server.publish({ topic: "t", data: chunk })));
    }
    expect((await stats()).bufferedBytes).toBeGreaterThanOrEqual(1_048_576);
    await waitFor("the expired stream to be released", async () => (await stats()).connections === 1, 10_000);
    // Events and heartbeats after the end must not be written to it (a write after end would crash the process).
    for (let i = 0; i < 10; i++) await server.publish({ topic: "t", data: `${i}` });
    await idle.until("several heartbeats", (s) => s.comments.length >= 5);
    const health = await request(`${server.url}/health`);
    expect(health.statusCode).toBe(200);
    await health.body.dump();
    stalled.destroy();
    idle.close();
  });

  it("end /stats/stream when the token that opened it expires, not before", async () => {
    server = await startServer({ subscriberJwtKey: SECRET });
    const token = await hs256({ subscribe: ["*"], expiresInS: 2 });
    const expMs = expOf(token) * 1_000;
    const stream = await openStream(`${server.url}/stats/stream`, { authorization: `Bearer ${token}` });
    expect(stream.status).toBe(200);
    await stream.until("the first sample", (s) => s.events.length >= 1);
    await stream.until("the stream to end at expiry", (s) => s.ended, 5_000);
    // Seen after the end: the server cannot have ended it before its exp second came.
    expect(Date.now()).toBeGreaterThanOrEqual(expMs);
    expect(stream.endedBy).toBe("server");
    expect(stream.events.at(-1)?.type).toBe("token-expired");
  });

  it("tell an event stream why it ends when its token expires: a last token-expired event, with no id", async () => {
    server = await startServer({ subscriberJwtKey: SECRET });
    // Two seconds: a loaded machine must not see the token expire before the stream opens.
    const token = await hs256({ subscribe: ["*"], expiresInS: 2 });
    const stream = await openStream(`${server.url}/events?topic=t`, { authorization: `Bearer ${token}` });
    const { id } = await server.publish({ topic: "t", data: "before expiry" });
    await stream.until("the stream to end at expiry", (s) => s.ended, 5_000);
    const last = stream.events.at(-1);
    expect(last?.type).toBe("token-expired");
    // The id field is absent: Last-Event-ID still points at the last event the client really got.
    expect(last?.lastEventId).toBe(id);
    expect(stream.raw).not.toMatch(/id: [^\n]*\nevent: token-expired/);
    const data = JSON.parse(last?.data ?? "{}");
    expect(data).toMatchObject({ reason: "token-expired" });
    expect(data.message).toMatch(
      /^The token that opened this stream expired at \d{4}-.*Z: reconnect with a fresh token$/,
    );
  });

  it("leave no connection slot behind when the client goes while its token is being checked", async () => {
    server = await startServer({ subscriberJwtKey: SECRET, maxConnections: 20, maxConnectionsPerIp: 0 });
    // Distinct tokens, so each one is verified (not served from the cache) while its client is leaving.
    const tokens = await Promise.all(Array.from({ length: 40 }, (_, i) => hs256({ subscribe: ["*"], sub: `c${i}` })));
    const sockets = await Promise.all(tokens.map((token) => stalledRequest(server.url, "/events?topic=t", token)));
    for (const socket of sockets) socket.destroy();
    await waitFor("every slot to be free", async () => (await stats()).connections === 0, 5_000);
    const fresh = await openStream(`${server.url}/events?topic=t`);
    expect(fresh.status).toBe(200);
    fresh.close();
  });
});
