import type { EventEmitter } from "node:events";
import { constants, type Http2ServerResponse, type ServerHttp2Stream } from "node:http2";
import type { FrameSource, StreamWriter } from "./stream-writer.js";

/**
 * An event stream on one HTTP/2 stream: DATA frames, written to the `ServerHttp2Stream` itself
 * (the compatibility `Http2ServerResponse` only sends the head). Many such streams share one
 * connection: ending or dropping one never touches the connection or the others.
 *
 * The buffer bound counts `stream.writableLength`: Node completes an HTTP/2 stream write only once
 * its bytes went out in DATA frames, so what flow control holds back (the client stopped granting
 * window for this stream, or the whole connection stalled) stays counted here until the client
 * reads it. A stream past the bound is reset (`RST_STREAM`), which frees what it held, while the
 * other streams of the connection keep flowing.
 */
export class Http2Writer implements StreamWriter {
  readonly #res: Http2ServerResponse;
  readonly #stream: ServerHttp2Stream;

  constructor(res: Http2ServerResponse) {
    this.#res = res;
    this.#stream = res.stream;
  }

  get unsentBytes(): number {
    return this.#stream.writableLength;
  }

  get gone(): boolean {
    return this.#stream.destroyed || this.#stream.closed;
  }

  open(headers: Record<string, string | number | string[]>, first: Buffer): void {
    // No `Connection` header: HTTP/2 forbids connection-specific headers (RFC 9113 §8.2.2), and
    // Node's compatibility layer throws on one.
    this.#res.writeHead(200, headers);
    this.#res.write(first);
  }

  write(parts: readonly (Buffer | undefined)[], count: number, frames: FrameSource): EventEmitter | undefined {
    return this.#stream.write(frames.frame(parts, count, false)) ? undefined : this.#stream;
  }

  watch(listener: () => void): void {
    // Fired on the client's RST_STREAM, on the end of the stream, and when the session closes.
    this.#stream.on("close", listener);
  }

  unwatch(listener: () => void): void {
    this.#stream.off("close", listener);
  }

  abort(): void {
    this.#stream.close(constants.NGHTTP2_CANCEL);
  }

  end(graceMs: number): void {
    const stream = this.#stream;
    const cutOff = setTimeout(() => stream.close(constants.NGHTTP2_CANCEL), graceMs);
    cutOff.unref();
    stream.once("close", () => clearTimeout(cutOff));
    // END_STREAM on this stream only: the connection stays for the client's other streams (on
    // shutdown, the server sends GOAWAY to the whole connection; see `src/connections.ts`).
    stream.end();
  }
}
