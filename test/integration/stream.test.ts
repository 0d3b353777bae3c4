import { spawn } from "node:child_process";
import { connect } from "node:net";
import { EventSource } from "eventsource";
import { request } from "undici";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startServer, type TestServer } from "../helpers/server.js";
import { openStream } from "../helpers/stream.js";
import { waitFor } from "../helpers/wait.js";

let server: TestServer;
beforeEach(async () => {
  server = await startServer({ retryMs: 1_500 });
});
afterEach(() => server.close());

describe("GET /events", () => {
  it("sends the SSE headers and a retry line at once, before any event", async () => {
    const stream = await openStream(`${server.url}/events`);
    expect(stream.status).toBe(200);
    expect(stream.headers["content-type"]).toBe("text/event-stream; charset=utf-8");
    expect(stream.headers["cache-control"]).toBe("no-cache");
    expect(stream.headers["x-accel-buffering"]).toBe("no");
    expect(stream.headers.connection).toBe("keep-alive");
    expect(stream.headers["access-control-allow-origin"]).toBe("*");
    await stream.until("the retry line", (s) => s.retry !== undefined);
    expect(stream.raw).toBe("retry: 1500\n\n");
    stream.close();
  });

  it("delivers a publish to an EventSource client with its id, event name and data", async () => {
    const source = new EventSource(`${server.url}/events?topic=news`);
    try {
      await new Promise((resolve, reject) => {
        source.onopen = resolve;
        source.onerror = reject;
      });
      const received = new Promise<MessageEvent>((resolve) => source.addEventListener("update", resolve));
      const plain = new Promise<MessageEvent>((resolve) => {
        source.onmessage = resolve;
      });
      const first = await server.publish({ topic: "news", event: "update", data: { headline: "hi" } });
      const second = await server.publish({ topic: "news", data: "two\nlines" });
      const update = await received;
      expect(update.lastEventId).toBe(first.id);
      expect(JSON.parse(update.data)).toEqual({ headline: "hi" });
      const message = await plain;
      expect(message.lastEventId).toBe(second.id);
      expect(message.data).toBe("two\nlines");
    } finally {
      source.close();
    }
  });

  it("sends a JSON string as its text and any other JSON value as JSON", async () => {
    const stream = await openStream(`${server.url}/events`);
    for (const data of ["plain text", '{"already":"json text"}', 42, null, [1, "a"], { nested: { ok: true } }]) {
      await server.publish({ data });
    }
    const events = await stream.take(6);
    expect(events.map((e) => e.data)).toEqual([
      "plain text",
      '{"already":"json text"}',
      "42",
      "null",
      '[1,"a"]',
      '{"nested":{"ok":true}}',
    ]);
    stream.close();
  });

  it("streams to curl -N as soon as events are published", async () => {
    const curl = spawn("curl", ["-sN", `${server.url}/events?topic=cli`]);
    let out = "";
    curl.stdout.on("data", (chunk) => {
      out += chunk;
    });
    try {
      await waitFor("curl to print the retry line", () => out.includes("retry: 1500"));
      const { id } = await server.publish({ topic: "cli", event: "note", data: "from curl" });
      await waitFor("curl to print the event", () => out.includes("data: from curl\n\n"));
      expect(out).toContain(`id: ${id}\nevent: note\ndata: from curl\n\n`);
    } finally {
      curl.kill();
    }
  });

  it("keeps topics apart, and serves several topics, the default topic and * on one stream each", async () => {
    const only = {
      a: await openStream(`${server.url}/events?topic=a`),
      ab: await openStream(`${server.url}/events?topic=a&topic=orders/42`),
      all: await openStream(`${server.url}/events?topic=*`),
      none: await openStream(`${server.url}/events`),
    };
    for (const topic of ["a", "orders/42", "c", "default", "a"]) await server.publish({ topic, data: topic });
    await only.all.take(5);
    await only.a.take(2);
    await only.ab.take(3);
    await only.none.take(1);
    // A last event on every topic, so anything wrongly routed would have arrived before it.
    for (const topic of ["a", "orders/42", "c", "default"]) await server.publish({ topic, data: `end ${topic}` });
    await only.all.take(9);
    await only.a.take(3);
    await only.ab.take(5);
    await only.none.take(2);
    expect(only.a.events.map((e) => e.data)).toEqual(["a", "a", "end a"]);
    expect(only.ab.events.map((e) => e.data)).toEqual(["a", "orders/42", "a", "end a", "end orders/42"]);
    expect(only.none.events.map((e) => e.data)).toEqual(["default", "end default"]);
    expect(only.all.events.map((e) => e.data)).toEqual([
      "a",
      "orders/42",
      "c",
      "default",
      "a",
      "end a",
      "end orders/42",
      "end c",
      "end default",
    ]);
    for (const s of Object.values(only)) s.close();
  });

  it("refuses a bad topic with a 400 before the stream opens", async () => {
    const res = await request(`${server.url}/events?topic=ok&topic=no%0Anewline`);
    expect(res.statusCode).toBe(400);
    expect(res.headers["content-type"]).toContain("application/json");
    expect(await res.body.json()).toMatchObject({
      code: "HERALD_INVALID_TOPIC",
      message: expect.stringContaining('"no\\nnewline"'),
    });
    expect((await server.stats()).connections).toBe(0);
  });

  it("counts streams and subscribers per topic in /stats, and frees them on disconnect", async () => {
    const streams = [
      await openStream(`${server.url}/events?topic=a`),
      await openStream(`${server.url}/events?topic=a&topic=b`),
      await openStream(`${server.url}/events?topic=*`),
    ];
    const stats = await server.stats();
    expect(stats).toMatchObject({ connections: 3, timers: 0, topics: { a: 2, b: 1, "*": 1 } });
    await server.publish({ topic: "a", data: "x" });
    await Promise.all(streams.map((s) => s.take(1)));
    expect((await server.stats()).delivered).toBe(3);
    for (const s of streams) s.close();
    const after = await waitFor("the server to see the disconnects", async () => {
      const s = await server.stats();
      return s.connections === 0 && s;
    });
    expect(after.topics).toEqual({});
    expect(after).toMatchObject({ published: 1, delivered: 3 });
  });
});

describe("stream edge cases", () => {
  it("resumes after a non-ASCII id sent as UTF-8 in Last-Event-ID, as browsers send it", async () => {
    await server.publish({ topic: "u", id: "café-1", data: "first" });
    await server.publish({ topic: "u", data: "second" });
    // undici (and Node) write header values as latin1: only a raw socket sends the UTF-8 bytes a browser sends.
    const { hostname, port } = new URL(server.url);
    const socket = connect(Number(port), hostname);
    let raw = "";
    socket.setEncoding("utf8");
    socket.on("data", (text: string) => {
      raw += text;
    });
    socket.write(
      Buffer.concat([
        Buffer.from(`GET /events?topic=u HTTP/1.1\r\nHost: ${hostname}\r\nLast-Event-ID: `, "latin1"),
        Buffer.from("café-1", "utf8"),
        Buffer.from("\r\n\r\n", "latin1"),
      ]),
    );
    try {
      await waitFor("the first event", () => /\ndata: .*\n\n/.test(raw));
      expect(raw).not.toContain("event: reset");
      expect(raw).toMatch(/\r\n\r\n[0-9a-f]+\r\nretry: 1500\n\n\r\n[0-9a-f]+\r\nid: \S+\ndata: second\n\n/);
    } finally {
      socket.destroy();
    }
  });

  it("counts a topic named __proto__ like any other", async () => {
    const stream = await openStream(`${server.url}/events?topic=__proto__`);
    expect(Object.entries((await server.stats()).topics)).toEqual([["__proto__", 1]]);
    stream.close();
  });

  it("answers HEAD on a stream route at once instead of opening a stream that never ends", async () => {
    for (const path of ["/events", "/ticks"]) {
      const res = await request(`${server.url}${path}`, { method: "HEAD" });
      expect(res.statusCode).toBe(404);
      await res.body.dump();
    }
    expect(await server.stats()).toMatchObject({ connections: 0, timers: 0 });
  });

  it("frees pipelined stream requests when their socket closes", async () => {
    const { hostname, port } = new URL(server.url);
    const socket = connect(Number(port), hostname);
    await new Promise((resolve) => socket.once("connect", resolve));
    // The second request waits behind the first, whose stream never ends: its response has no socket yet.
    socket.write(`GET /events?topic=p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /events?topic=p2 HTTP/1.1\r\nHost: x\r\n\r\n`);
    await waitFor("both streams to subscribe", async () => (await server.stats()).connections === 2);
    socket.destroy();
    const stats = await waitFor("both streams to be freed", async () => {
      const s = await server.stats();
      return s.connections === 0 && s;
    });
    expect(stats.topics).toEqual({});
  });
});

/** Splits an HTTP/1.1 chunked body into its chunks, failing on any framing error (RFC 9112 §7.1). */
function decodeChunks(body: string): string[] {
  const chunks: string[] = [];
  let at = 0;
  while (at < body.length) {
    const lineEnd = body.indexOf("\r\n", at);
    const sizeLine = body.slice(at, lineEnd);
    expect(sizeLine).toMatch(/^[0-9a-f]+$/);
    const size = Number.parseInt(sizeLine, 16);
    const chunk = body.slice(lineEnd + 2, lineEnd + 2 + size);
    expect(Buffer.byteLength(chunk)).toBe(size);
    expect(body.slice(lineEnd + 2 + size, lineEnd + 4 + size)).toBe("\r\n");
    chunks.push(chunk);
    at = lineEnd + 4 + size;
  }
  return chunks;
}

describe("the bytes on the wire", () => {
  /** Opens a raw stream, publishes three events in one turn of the event loop, returns head and body. */
  async function rawStream(httpVersion: string): Promise<{ head: string; body: string }> {
    const { hostname, port } = new URL(server.url);
    const socket = connect(Number(port), hostname);
    let raw = "";
    socket.setEncoding("latin1");
    socket.on("data", (text: string) => {
      raw += text;
    });
    socket.write(`GET /events?topic=wire HTTP/${httpVersion}\r\nHost: ${hostname}\r\n\r\n`);
    await waitFor("the retry line", () => raw.includes("retry: 1500"));
    await Promise.all(
      ["one", "two", "three"].map((data) =>
        server.app.inject({ method: "POST", url: "/events", payload: { topic: "wire", data } }),
      ),
    );
    await waitFor("the three events", () => raw.includes("data: three\n\n"));
    socket.destroy();
    const headEnd = raw.indexOf("\r\n\r\n");
    return { head: raw.slice(0, headEnd), body: raw.slice(headEnd + 4) };
  }

  it("sends events published in one turn as one HTTP/1.1 chunk, framed to the byte", async () => {
    const { head, body } = await rawStream("1.1");
    expect(head).toMatch(/\r\ntransfer-encoding: chunked/i);
    const chunks = decodeChunks(body);
    expect(chunks).toHaveLength(2);
    expect(chunks[0]).toBe("retry: 1500\n\n");
    expect(chunks[1]).toMatch(/^id: \S+\ndata: one\n\nid: \S+\ndata: two\n\nid: \S+\ndata: three\n\n$/);
  });

  it("sends an HTTP/1.0 client the bare event stream, ended by closing the connection", async () => {
    const { head, body } = await rawStream("1.0");
    expect(head).not.toMatch(/transfer-encoding/i);
    expect(head).toMatch(/\r\nconnection: close/i);
    expect(body).toMatch(/^retry: 1500\n\nid: \S+\ndata: one\n\nid: \S+\ndata: two\n\nid: \S+\ndata: three\n\n$/);
  });
});
