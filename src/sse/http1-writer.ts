/**
 * NODE INTERNALS LIVE HERE, AND ONLY HERE.
 *
 * `ServerResponse.write` costs four buffered writes, a cork and a tick per call, which at thousands
 * of streams is most of the process's garbage. So once the response head is out, this writer frames
 * HTTP/1.1 chunks itself and writes them straight to the socket. That is correct only while these
 * hold, which are Node's behaviour rather than its documented API:
 *
 * - `res._header`: after `writeHead` + `write`, the head Node sent, as a string (see `flattenHead`).
 * - `res.chunkedEncoding`: `true` when Node chose chunked transfer coding for the response, so the
 *   bytes on the socket must be chunks; `false` (HTTP/1.0) means raw bytes until the socket closes.
 * - `res.socket`: the connection's socket once the response is the socket's current one; `null`
 *   while a pipelined response waits behind the one before it (its bytes must then go through `res`).
 * - `res.writableLength`: includes what the socket holds, not only what `res` holds.
 *
 * And, since an idle stream's memory is what decides how many one process holds, a stream whose
 * head is out can take its connection over from `node:http` (`release`), the way Node itself hands
 * a socket to an `upgrade` listener: the server's listeners come off the socket, the request parser
 * goes back to Node's pool (`freeParser` of `node:_http_common`, as Node does when a connection
 * closes), and the response leaves the socket (`res.detachSocket`). From then on the request, the
 * response and whatever holds them (Fastify's request and reply, their logger) are garbage, and the
 * stream is a socket and this writer. That relies on:
 *
 * - the listeners `node:http` puts on a connection's socket, found by their function names
 *   (`SERVER_LISTENERS`); if one is missing, the connection stays with `node:http`, as before;
 * - `socket.parser` and `parser.incoming`: the connection's parser, and the request it parsed last;
 * - `freeParser(parser, req, socket)` and `res.detachSocket(socket)`.
 *
 * A taken-over connection has also left the server's list of connections: `server.closeAllConnections()`
 * no longer sees it (Herald ends its streams itself on close), and `node:http` no longer answers a
 * request pipelined behind the stream (it never could: the stream does not end).
 *
 * `test/unit/http1-internals.test.ts` pins each of these, and fails loudly if a Node release changes one.
 */
import type { EventEmitter } from "node:events";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createRequire } from "node:module";
import type { Socket } from "node:net";
import type { FrameSource, StreamWriter } from "./stream-writer.js";

/** The HTTP/1.1 chunk that ends a chunked body (RFC 9112 §7.1). */
const LAST_CHUNK = Buffer.from("0\r\n\r\n", "latin1");

/** The listeners `node:http` keeps on a connection's socket while it serves requests on it, by event. */
export const SERVER_LISTENERS: readonly (readonly [event: string, name: string])[] = [
  ["data", "bound socketOnData"],
  ["end", "bound socketOnEnd"],
  ["close", "bound socketOnClose"],
  ["drain", "bound socketOnDrain"],
  ["error", "socketOnError"],
  ["timeout", "socketOnTimeout"],
  ["resume", "onSocketResume"],
  ["pause", "onSocketPause"],
];

interface HttpParser {
  incoming: IncomingMessage | null;
}

type FreeParser = (parser: HttpParser, req: IncomingMessage, socket: Socket) => void;
const { freeParser } = createRequire(import.meta.url)("node:_http_common") as { freeParser: FreeParser };

/**
 * Node builds a response head by string concatenation and keeps it for the life of the response:
 * on a stream, hours, as a tree of some 30 string pieces (0.7 KB). A regexp test flattens a
 * string in place, which lets the pieces go. Without `_header`, a no-op.
 */
function flattenHead(res: ServerResponse): void {
  const head = (res as unknown as { _header?: unknown })._header;
  if (typeof head === "string") /^HTTP/.test(head);
}

/** Bytes a client sends on a stream's connection after its request are never answered: dropped. */
function discard(): void {}

/** As `node:http` does (`httpAllowHalfOpen` false): a client that ends its side gets the end of ours. */
function endOnEnd(this: Socket): void {
  this.end();
}

/** The error has closed the socket, or will: its `close` ends the stream. Without a listener, it would crash the process. */
function destroyOnError(this: Socket): void {
  this.destroy();
}

/** An event stream on an HTTP/1.x response: chunks framed here, written straight to the socket. */
export class Http1Writer implements StreamWriter {
  /** Writers released this turn, taken over once the parser that called their handlers has returned. */
  static #releasing: Http1Writer[] = [];

  static #takeOverReleased(): void {
    const writers = Http1Writer.#releasing;
    Http1Writer.#releasing = [];
    for (const writer of writers) writer.#takeOver();
  }

  /** The request and response, until the stream takes the connection over from `node:http`. */
  #req: IncomingMessage | undefined;
  #res: ServerResponse | undefined;
  readonly #socket: Socket;
  /** Taken over: whether the body is chunked (HTTP/1.1) or raw bytes until the socket closes (HTTP/1.0). */
  #chunked = false;
  #listener: (() => void) | undefined;

  constructor(req: IncomingMessage, res: ServerResponse) {
    this.#req = req;
    this.#res = res;
    this.#socket = req.socket;
  }

  get unsentBytes(): number {
    return (this.#res ?? this.#socket).writableLength;
  }

  get gone(): boolean {
    return this.#socket.destroyed || this.#res?.destroyed === true;
  }

  open(headers: Record<string, string | number | string[]>, first: Buffer): void {
    const res = this.#res as ServerResponse;
    // HTTP/1.1 keeps connections alive by default; saying so helps proxies that would not assume it.
    if (this.#req?.httpVersion === "1.1") headers.connection = "keep-alive";
    res.socket?.setTimeout(0);
    res.writeHead(200, headers);
    res.write(first);
    flattenHead(res);
  }

  /**
   * Takes the connection over from `node:http` soon (in this turn's check phase: the parser that
   * called the request handler may still be on the stack), which lets the request and response go.
   * Only for a response nobody else watches any more: `node:http` will never see it finish.
   */
  release(): void {
    if (Http1Writer.#releasing.length === 0) setImmediate(() => Http1Writer.#takeOverReleased());
    Http1Writer.#releasing.push(this);
  }

  /**
   * Takes the connection over (see the top of this file), if it is still this response's alone:
   * not closed or ended meanwhile, not a pipelined response waiting its turn, no later request
   * parsed on it. Otherwise, or if Node's listeners are not the ones expected, leaves it with `node:http`.
   */
  #takeOver(): void {
    const req = this.#req;
    const res = this.#res;
    const socket = this.#socket;
    const parser = (socket as Socket & { parser?: HttpParser | null }).parser;
    if (req === undefined || res === undefined || socket.destroyed || res.writableEnded) return;
    if (res.socket !== socket || parser == null || parser.incoming !== req) return;
    const found = SERVER_LISTENERS.map(([event, name]) => socket.listeners(event).find((f) => f.name === name));
    if (found.includes(undefined)) return;
    for (const [i, [event]] of SERVER_LISTENERS.entries()) socket.off(event, found[i] as (...args: unknown[]) => void);
    this.#chunked = res.chunkedEncoding;
    if (this.#listener !== undefined) res.off("close", this.#listener);
    res.detachSocket(socket);
    freeParser(parser, req, socket);
    // With `socket.parser` gone, Node's per-socket `on` wrappers put the plain methods back on the first call.
    socket.on("data", discard);
    socket.on("end", endOnEnd);
    socket.on("error", destroyOnError);
    // Node pauses a connection whose writes back up while it parses; taken over, it must read on to see the client leave.
    socket.resume();
    this.#req = undefined;
    this.#res = undefined;
  }

  write(parts: readonly (Buffer | undefined)[], count: number, frames: FrameSource): EventEmitter | undefined {
    const res = this.#res;
    if (res === undefined) {
      return this.#socket.write(frames.frame(parts, count, this.#chunked)) ? undefined : this.#socket;
    }
    if (res.socket === this.#socket) {
      return this.#socket.write(frames.frame(parts, count, res.chunkedEncoding)) ? undefined : this.#socket;
    }
    // A pipelined response waits behind the one before it on this socket: the response holds
    // its bytes until its turn, so they must go through it.
    return res.write(frames.frame(parts, count, false)) ? undefined : res;
  }

  watch(listener: () => void): void {
    this.#listener = listener;
    this.#res?.on("close", listener);
    // A pipelined request's response is not attached to the socket yet and never sees it close.
    this.#socket.on("close", listener);
  }

  unwatch(listener: () => void): void {
    this.#listener = undefined;
    this.#res?.off("close", listener);
    this.#socket.off("close", listener);
  }

  abort(): void {
    this.#socket.destroy();
  }

  end(graceMs: number): void {
    const socket = this.#socket;
    const cutOff = setTimeout(() => socket.destroy(), graceMs);
    cutOff.unref();
    socket.once("close", () => clearTimeout(cutOff));
    const res = this.#res;
    if (res === undefined) {
      if (this.#chunked) socket.write(LAST_CHUNK);
      socket.end();
      return;
    }
    // Ending the socket too: the client must reconnect, not keep a kept-alive socket to a closing server.
    res.end(() => socket.end());
  }
}
