import { type ClientHttp2Session, type ClientHttp2Stream, connect, constants } from "node:http2";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { startServer, type TestServer } from "../helpers/server.js";
import { SseParser } from "../helpers/sse-parser.js";
import { createCertificate, type TestCertificate } from "../helpers/tls.js";
import { waitFor } from "../helpers/wait.js";

const LIMIT = 64 * 1024;
let certificate: TestCertificate;
let server: TestServer;
let session: ClientHttp2Session | undefined;
beforeAll(() => {
  certificate = createCertificate();
});
afterEach(async () => {
  session?.destroy();
  await server?.close();
});

function startHttps(overrides: Parameters<typeof startServer>[0] = {}) {
  return startServer({ tlsCertFile: certificate.certFile, tlsKeyFile: certificate.keyFile, ...overrides });
}

/** One HTTP/2 connection to the server, with node:http2: every stream below shares it. */
function connectH2(url: string): ClientHttp2Session {
  const client = connect(url, { ca: certificate.cert });
  client.on("error", () => {});
  return client;
}

/** An event stream on `client`; `read: false` never takes a byte, so the stream's window closes. */
function h2Stream(client: ClientHttp2Session, path: string, read = true) {
  const stream: ClientHttp2Stream = client.request({ ":path": path, accept: "text/event-stream" });
  const parser = new SseParser();
  const state = { status: 0, closed: false, ended: false, rstCode: -1, parser, stream };
  stream.on("response", (headers) => {
    state.status = Number(headers[":status"]);
  });
  stream.on("error", () => {});
  stream.on("end", () => {
    state.ended = true;
  });
  stream.on("close", () => {
    state.closed = true;
    state.rstCode = stream.rstCode ?? -1;
  });
  if (read) {
    stream.setEncoding("utf8");
    stream.on("data", (text: string) => parser.feed(text));
  } else {
    stream.pause();
  }
  return state;
}

describe("HTTP/2 streams", () => {
  it("resets a stream whose client stops reading at MAX_SUBSCRIBER_BUFFER_BYTES, while the other streams of its connection keep flowing", async () => {
    server = await startHttps({ maxSubscriberBufferBytes: LIMIT, historySize: 50 });
    session = connectH2(server.url);
    const stalled = h2Stream(session, "/events?topic=flood", false);
    const reader = h2Stream(session, "/events?topic=flood");
    const ticks = h2Stream(session, "/ticks?interval=100");
    await waitFor("the streams to open", async () => (await server.stats()).connections === 3);

    const chunk = "x".repeat(32 * 1024);
    let published = 0;
    let peak = 0;
    // Bounded: without the bound, the stalled stream would hold all of this.
    while ((await server.stats()).closedTooSlow === 0 && published < 300) {
      await server.publish({ topic: "flood", data: `${published} ${chunk}` });
      published++;
      peak = Math.max(peak, (await server.stats()).bufferedBytes);
    }
    expect(await server.stats()).toMatchObject({ closedTooSlow: 1, connections: 2 });
    // What the server held for the stalled stream stayed near the bound: HTTP/2 flow control
    // held the bytes back, and they were counted while it did.
    expect(peak).toBeLessThan(2 * LIMIT + chunk.length);
    await waitFor("the stalled stream to be reset", () => stalled.closed);
    expect(stalled.rstCode).toBe(constants.NGHTTP2_CANCEL);

    // The same connection goes on: every event reached the reader, the ticks go on, and a new
    // stream opens on it.
    await server.publish({ topic: "flood", data: "after" });
    await waitFor("every event", () => reader.parser.events.at(-1)?.data === "after", 20_000);
    expect(reader.parser.events.map((e) => Number(e.data.split(" ")[0]))).toEqual([
      ...Array.from({ length: published }, (_, i) => i),
      Number.NaN,
    ]);
    const ticksSoFar = ticks.parser.events.length;
    await waitFor("more ticks", () => ticks.parser.events.length > ticksSoFar);
    const late = h2Stream(session, "/events?topic=flood");
    await server.publish({ topic: "flood", data: "late" });
    await waitFor("the late stream's event", () => late.parser.events.some((e) => e.data === "late"));
    expect(session.closed || session.destroyed).toBe(false);
  });

  it("counts HTTP/2 streams, not connections, against MAX_CONNECTIONS_PER_IP", async () => {
    server = await startHttps({ maxConnectionsPerIp: 2 });
    session = connectH2(server.url);
    const a = h2Stream(session, "/events?topic=l");
    const b = h2Stream(session, "/events?topic=l");
    await waitFor("two streams", async () => (await server.stats()).connections === 2);
    // The third stream on the same connection is refused; the connection and its two streams go on.
    const third = session.request({ ":path": "/events?topic=l" });
    const [status, body] = await new Promise<[number, string]>((resolve) => {
      let text = "";
      let code = 0;
      third.on("response", (headers) => {
        code = Number(headers[":status"]);
      });
      third.setEncoding("utf8");
      third.on("data", (chunk: string) => {
        text += chunk;
      });
      third.on("end", () => resolve([code, text]));
    });
    expect(status).toBe(429);
    expect(JSON.parse(body)).toMatchObject({ code: "HERALD_IP_CONNECTION_LIMIT" });
    await server.publish({ topic: "l", data: "still here" });
    await waitFor("both streams to get the event", () => a.parser.events.length === 1 && b.parser.events.length === 1);
    a.stream.close(constants.NGHTTP2_CANCEL);
    await waitFor("the slot to free up", async () => (await server.stats()).connections === 1);
    const c = h2Stream(session, "/events?topic=l");
    await waitFor("a new stream in the freed slot", () => c.status === 200);
  });

  it("sends heartbeats on idle HTTP/2 streams", async () => {
    server = await startHttps({ heartbeatMs: 50 });
    session = connectH2(server.url);
    const idle = h2Stream(session, "/events?topic=quiet");
    await waitFor("three heartbeats", () => idle.parser.comments.length >= 3);
    expect(idle.parser.events).toEqual([]);
  });

  it("releases a stream the client resets, and every stream of a connection that closes", async () => {
    server = await startHttps();
    session = connectH2(server.url);
    const streams = [0, 1, 2].map(() => h2Stream(session as ClientHttp2Session, "/events?topic=r"));
    h2Stream(session, "/ticks?interval=100");
    await waitFor("four streams", async () => (await server.stats()).connections === 4);
    (streams[0] as { stream: ClientHttp2Stream }).stream.close(constants.NGHTTP2_CANCEL);
    await waitFor("the reset stream to be released", async () => (await server.stats()).connections === 3);
    expect((await server.stats()).topics).toEqual({ r: 2 });
    expect((await server.stats()).timers).toBe(1);
    session.destroy();
    await waitFor("the connection's streams to be released", async () => (await server.stats()).connections === 0);
    expect(await server.stats()).toMatchObject({ topics: {}, timers: 0 });
  });

  it("on close, sends GOAWAY and ends every stream cleanly, so clients reconnect elsewhere", async () => {
    server = await startHttps();
    session = connectH2(server.url);
    let goaway: number | undefined;
    session.on("goaway", (code) => {
      goaway = code;
    });
    const a = h2Stream(session, "/events?topic=g");
    const b = h2Stream(session, "/ticks?interval=100");
    await waitFor("the streams to open", async () => (await server.stats()).connections === 2);
    const closing = server.app.close();
    await waitFor("GOAWAY", () => goaway !== undefined);
    expect(goaway).toBe(constants.NGHTTP2_NO_ERROR);
    await closing;
    await waitFor("both streams to end", () => a.closed && b.closed);
    // Ended with END_STREAM, not reset: EventSource reconnects after its retry delay.
    expect([a.ended, b.ended]).toEqual([true, true]);
    expect([a.rstCode, b.rstCode]).toEqual([constants.NGHTTP2_NO_ERROR, constants.NGHTTP2_NO_ERROR]);
    await waitFor("the connection to close", () => (session as ClientHttp2Session).closed);
  });
});
