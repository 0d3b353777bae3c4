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
 * `test/unit/http1-internals.test.ts` pins each of these, and fails loudly if a Node release changes one.
 */
import type { EventEmitter } from "node:events";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { FrameSource, StreamWriter } from "./stream-writer.js";

/**
 * Node builds a response head by string concatenation and keeps it for the life of the response:
 * on a stream, hours, as a tree of some 30 string pieces (0.7 KB). A regexp test flattens a
 * string in place, which lets the pieces go. Without `_header`, a no-op.
 */
function flattenHead(res: ServerResponse): void {
  const head = (res as unknown as { _header?: unknown })._header;
  if (typeof head === "string") /^HTTP/.test(head);
}

/** An event stream on an HTTP/1.x response: chunks framed here, written straight to the socket. */
export class Http1Writer implements StreamWriter {
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  readonly #socket: Socket;

  constructor(req: IncomingMessage, res: ServerResponse) {
    this.#req = req;
    this.#res = res;
    this.#socket = req.socket;
  }

  get unsentBytes(): number {
    return this.#res.writableLength;
  }

  get gone(): boolean {
    return this.#socket.destroyed || this.#res.destroyed;
  }

  open(headers: Record<string, string | number | string[]>, first: Buffer): void {
    // HTTP/1.1 keeps connections alive by default; saying so helps proxies that would not assume it.
    if (this.#req.httpVersion === "1.1") headers.connection = "keep-alive";
    this.#res.socket?.setTimeout(0);
    this.#res.writeHead(200, headers);
    this.#res.write(first);
    flattenHead(this.#res);
  }

  write(parts: readonly (Buffer | undefined)[], count: number, frames: FrameSource): EventEmitter | undefined {
    const res = this.#res;
    if (res.socket === this.#socket) {
      return this.#socket.write(frames.frame(parts, count, res.chunkedEncoding)) ? undefined : this.#socket;
    }
    // A pipelined response waits behind the one before it on this socket: the response holds
    // its bytes until its turn, so they must go through it.
    return res.write(frames.frame(parts, count, false)) ? undefined : res;
  }

  watch(listener: () => void): void {
    this.#res.on("close", listener);
    // A pipelined request's response is not attached to the socket yet and never sees it close.
    this.#socket.on("close", listener);
  }

  unwatch(listener: () => void): void {
    this.#res.off("close", listener);
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
    // Ending the socket too: the client must reconnect, not keep a kept-alive socket to a closing server.
    this.#res.end(() => socket.end());
  }
}
