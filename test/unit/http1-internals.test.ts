/**
 * Pins the Node internals `src/sse/http1-writer.ts` depends on. If one of these fails after a Node
 * upgrade, HTTP/1.1 streams would write wrong bytes, or keep what they should let go: fix the
 * writer before anything else.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createRequire } from "node:module";
import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { Http1Writer, SERVER_LISTENERS } from "../../src/sse/http1-writer.js";
import { waitFor } from "../helpers/wait.js";

let server: Server;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

/** A server whose handler starts an event stream and hands out each request and response. */
async function listen(): Promise<{
  port: number;
  seen: { req: IncomingMessage; res: ServerResponse; socketAtStart: unknown }[];
}> {
  const seen: { req: IncomingMessage; res: ServerResponse; socketAtStart: unknown }[] = [];
  server = createServer((req, res) => {
    const socketAtStart = res.socket;
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write("retry: 1000\n\n");
    seen.push({ req, res, socketAtStart });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { port: (server.address() as { port: number }).port, seen };
}

function rawClient(port: number, requests: string): Socket {
  const socket = connect(port, "127.0.0.1");
  sockets.push(socket);
  socket.on("error", () => {});
  socket.write(requests);
  return socket;
}

describe("Node's HTTP/1.1 response internals that Http1Writer relies on", () => {
  it("res._header is the head as a string once written; chunkedEncoding is true for HTTP/1.1, false for HTTP/1.0", async () => {
    const { port, seen } = await listen();
    rawClient(port, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    rawClient(port, "GET /b HTTP/1.0\r\nHost: x\r\n\r\n");
    await waitFor("both requests", () => seen.length === 2);
    for (const { req, res } of seen) {
      const head = (res as unknown as { _header?: unknown })._header;
      expect(typeof head, "res._header must be a string after writeHead + write").toBe("string");
      expect(head as string).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
      expect(res.chunkedEncoding, `chunkedEncoding for HTTP/${req.httpVersion}`).toBe(req.httpVersion === "1.1");
    }
  });

  it("res.socket is the request's socket for the current response, and null for a pipelined one waiting its turn", async () => {
    const { port, seen } = await listen();
    rawClient(port, "GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n");
    await waitFor("both pipelined requests", () => seen.length === 2);
    const [first, second] = seen as [(typeof seen)[0], (typeof seen)[0]];
    expect(first.socketAtStart).toBe(first.req.socket);
    expect(first.res.socket).toBe(first.req.socket);
    expect(second.socketAtStart, "a pipelined response must not be attached to the socket yet").toBe(null);
    expect(second.res.socket).toBe(null);
  });

  it("res.writableLength counts what the socket holds, when bytes go to the socket directly", async () => {
    const { port, seen } = await listen();
    const client = rawClient(port, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    client.pause();
    await waitFor("the request", () => seen.length === 1);
    const { req, res } = seen[0] as (typeof seen)[0];
    const chunk = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < 64 && req.socket.writableLength === 0; i++) req.socket.write(chunk);
    expect(req.socket.writableLength).toBeGreaterThan(0);
    expect(res.writableLength).toBeGreaterThanOrEqual(req.socket.writableLength);
  });
});

describe("Node's HTTP/1.1 connection internals that Http1Writer's take-over relies on", () => {
  it("node:http keeps these listeners on a connection's socket while it serves a request", async () => {
    const { port, seen } = await listen();
    rawClient(port, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    await waitFor("the request", () => seen.length === 1);
    const { req } = seen[0] as (typeof seen)[0];
    for (const [event, name] of SERVER_LISTENERS) {
      const names = req.socket.listeners(event).map((f) => f.name);
      expect(names, `the socket's ${event} listeners`).toContain(name);
    }
  });

  it("socket.parser is the connection's parser and parser.incoming its last request; freeParser and res.detachSocket exist", async () => {
    const { port, seen } = await listen();
    rawClient(port, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    await waitFor("the request", () => seen.length === 1);
    const { req, res } = seen[0] as (typeof seen)[0];
    const parser = (req.socket as Socket & { parser?: { incoming?: unknown } }).parser;
    expect(parser?.incoming).toBe(req);
    const common = createRequire(import.meta.url)("node:_http_common") as { freeParser?: unknown };
    expect(typeof common.freeParser).toBe("function");
    expect(typeof res.detachSocket).toBe("function");
  });

  it("a taken-over connection has none of node:http's listeners, parser or response, and still carries chunks and their end", async () => {
    const streams: { writer: Http1Writer; socket: Socket }[] = [];
    let closes = 0;
    server = createServer((req, res) => {
      const writer = new Http1Writer(req, res);
      writer.open({ "content-type": "text/event-stream" }, Buffer.from("retry: 1000\n\n"));
      writer.watch(() => closes++);
      writer.release();
      streams.push({ writer, socket: req.socket });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const client = rawClient((server.address() as { port: number }).port, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    let received = "";
    client.on("data", (chunk: Buffer) => {
      received += chunk.toString("latin1");
    });
    await waitFor("the stream", () => streams.length === 1);
    const { writer, socket } = streams[0] as (typeof streams)[0];
    const internals = socket as Socket & { parser?: unknown; _httpMessage?: unknown };
    await waitFor("the take-over", () => internals.parser === null);
    for (const [event, name] of SERVER_LISTENERS) {
      expect(
        socket.listeners(event).map((f) => f.name),
        `the socket's ${event} listeners`,
      ).not.toContain(name);
    }
    expect(internals._httpMessage).toBe(null);

    const frames = {
      frame: (parts: readonly (Buffer | undefined)[], _count: number, chunked: boolean) => {
        const bytes = parts[0] as Buffer;
        return chunked
          ? Buffer.concat([Buffer.from(`${bytes.length.toString(16)}\r\n`), bytes, Buffer.from("\r\n")])
          : bytes;
      },
    };
    writer.write([Buffer.from("data: x\n\n")], 1, frames);
    await waitFor("the chunk", () => received.endsWith("9\r\ndata: x\n\n\r\n"));
    writer.end(5_000);
    await waitFor("the last chunk and the close", () => received.endsWith("\r\n0\r\n\r\n") && closes > 0);
  });
});
