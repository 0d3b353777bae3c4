/**
 * An open HTTP/1.1 stream keeps neither Node's request and response nor, through them, Fastify's
 * request, reply and child logger: once the stream is set up they are garbage (issue 12, memory per
 * idle stream). Checked with WeakRefs and forced collections (`gc`, exposed for this file's
 * process), never with timings. The stream itself must go on as before: it delivers, counts in
 * `/stats`, and is cleaned up when its client leaves or when Herald ends it.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { connect, type Socket } from "node:net";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import Fastify, { type FastifyInstance } from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import { herald } from "../../src/index.js";
import { startServer, type TestServer } from "../helpers/server.js";
import { openStream } from "../helpers/stream.js";
import { waitFor } from "../helpers/wait.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

let server: TestServer | undefined;
let host: FastifyInstance | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await server?.close();
  await host?.close();
  server = undefined;
  host = undefined;
});

/** WeakRefs to the `node:http` request and response of every request to a path starting with `prefix`. */
function watchRequests(app: FastifyInstance, prefix: string): WeakRef<IncomingMessage | ServerResponse>[] {
  const refs: WeakRef<IncomingMessage | ServerResponse>[] = [];
  app.server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    if (req.url?.startsWith(prefix)) refs.push(new WeakRef(req), new WeakRef(res));
  });
  return refs;
}

/** Collects garbage until every ref is cleared; fails, naming what is still alive, if one never is. */
async function collected(refs: WeakRef<object>[]): Promise<void> {
  const alive = () => refs.filter((ref) => ref.deref() !== undefined).map((ref) => ref.deref()?.constructor.name);
  try {
    await waitFor("the request and response to be collected", async () => {
      // The stream lets them go in the check phase after it opens; WeakRefs clear after the turn that read them.
      await new Promise((resolve) => setImmediate(resolve));
      gc();
      return alive().length === 0;
    });
  } catch (err) {
    throw new Error(`still alive: ${alive().join(", ")}`, { cause: err });
  }
}

/** A raw HTTP/1.x client: resolves with the socket and everything received once `until` is in it. */
function rawStream(port: number, request: string, until: string): Promise<{ socket: Socket; received: () => string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    sockets.push(socket);
    let received = "";
    socket.on("data", (chunk: Buffer) => {
      received += chunk.toString("latin1");
      if (received.includes(until)) resolve({ socket, received: () => received });
    });
    socket.once("error", reject);
    socket.write(request);
  });
}

describe("an open stream lets the request go", () => {
  it("GET /events: the request and response are collected, and the stream still delivers, counts and is cleaned up", async () => {
    server = await startServer();
    const refs = watchRequests(server.app, "/events");
    const stream = await openStream(`${server.url}/events?topic=news`);
    await waitFor("the stream to count", async () => (await server?.stats())?.connections === 1);
    await collected(refs);
    expect(refs).toHaveLength(2);

    await server.publish({ topic: "news", data: "still here" });
    expect((await stream.take(1))[0]?.data).toBe("still here");
    stream.close();
    await waitFor("the stream to be released", async () => (await server?.stats())?.connections === 0);
  });

  it("GET /.well-known/mercure: the same, though the hub keeps the stream's opener", async () => {
    server = await startServer();
    const refs = watchRequests(server.app, "/.well-known/mercure");
    const stream = await openStream(`${server.url}/.well-known/mercure?topic=news`);
    await waitFor("the stream to count", async () => (await server?.stats())?.connections === 1);
    await collected(refs);

    await server.publish({ topic: "news", data: "still here" });
    expect((await stream.take(1))[0]?.data).toBe("still here");
  });

  it("HTTP/1.0: raw bytes after the head, and the end of the stream closes the connection", async () => {
    server = await startServer();
    const refs = watchRequests(server.app, "/events");
    const port = Number(new URL(server.url).port);
    const { socket, received } = await rawStream(port, "GET /events?topic=news HTTP/1.0\r\n\r\n", "retry:");
    await collected(refs);
    await server.publish({ topic: "news", data: "one" });
    await waitFor("the event", () => received().includes("data: one\n\n"));
    expect(received()).not.toMatch(/\r\n[0-9a-f]+\r\nid:/);
    const closed = new Promise((resolve) => socket.once("close", resolve));
    await server.app.close();
    await closed;
  });

  it("HTTP/1.1: Herald's end of the stream is the last chunk, then the end of the connection", async () => {
    server = await startServer();
    const refs = watchRequests(server.app, "/events");
    const port = Number(new URL(server.url).port);
    const { socket, received } = await rawStream(port, "GET /events?topic=news HTTP/1.1\r\nHost: x\r\n\r\n", "retry:");
    await collected(refs);
    const closed = new Promise((resolve) => socket.once("end", resolve));
    await server.app.close();
    await closed;
    expect(received().endsWith("\r\n0\r\n\r\n")).toBe(true);
  });

  it("bytes a client sends after its request are dropped, and its leaving still releases the stream", async () => {
    server = await startServer();
    const refs = watchRequests(server.app, "/events");
    const port = Number(new URL(server.url).port);
    const { socket } = await rawStream(port, "GET /events?topic=news HTTP/1.1\r\nHost: x\r\n\r\n", "retry:");
    await collected(refs);
    socket.write("GET /stats HTTP/1.1\r\nHost: x\r\n\r\nnot HTTP at all\r\n\r\n");
    await server.publish({ topic: "news", data: "one" });
    expect((await server.stats()).connections).toBe(1);
    socket.end();
    await waitFor("the stream to be released", async () => (await server?.stats())?.connections === 0);
  });

  it("keeps them while an onResponse hook waits for the end, and the hook runs when Herald ends the stream", async () => {
    host = Fastify({ logger: { level: "error" } });
    const ended: { url: string; status: number }[] = [];
    host.addHook("onResponse", async (request, reply) => {
      ended.push({ url: request.url, status: reply.statusCode });
    });
    await host.register(herald, { maxConnectionsPerIp: 0 });
    await host.listen({ host: "127.0.0.1", port: 0 });
    const port = (host.server.address() as { port: number }).port;
    const stream = await openStream(`http://127.0.0.1:${port}/events?topic=news`);
    await waitFor("the stream to count", () => host?.herald.stats().connections === 1);
    await host.herald.close();
    await stream.until("the end of the stream", (s) => s.ended);
    await waitFor("the onResponse hook", () => ended.length === 1);
    expect(ended).toEqual([{ url: "/events?topic=news", status: 200 }]);
  });
});
