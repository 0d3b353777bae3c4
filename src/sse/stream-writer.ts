import type { EventEmitter } from "node:events";

/** Builds the bytes of one write; `StreamRegistry` hands the same Buffer to every stream that queued the same parts. */
export interface FrameSource {
  /**
   * The bytes that put `parts[0..count)` on the wire: one HTTP/1.1 chunk when `chunked`, else the
   * parts themselves. Streams of the same topics queue the very same Buffers, so the source may
   * hand every one of them the same frame.
   */
  frame(parts: readonly (Buffer | undefined)[], count: number, chunked: boolean): Buffer;
}

/**
 * How the bytes of one event stream reach its client: the seam between `SseStream` (queueing,
 * batching, the buffer bound, heartbeats) and a protocol. One implementation per protocol:
 * `Http1Writer` (chunks written straight to the socket) and `Http2Writer` (DATA frames on an
 * HTTP/2 stream). A writer never throws on a gone client; `SseStream` stops calling it once the
 * stream has closed.
 */
export interface StreamWriter {
  /**
   * Bytes handed to the connection that the client has not taken yet: what counts against
   * `MAX_SUBSCRIBER_BUFFER_BYTES`. Over HTTP/2 this includes bytes held back by flow control.
   */
  readonly unsentBytes: number;
  /** True once the client is gone or the response has ended. */
  readonly gone: boolean;
  /** Sends the response head (status 200 and `headers`) and `first`, at once. */
  open(headers: Record<string, string | number | string[]>, first: Buffer): void;
  /**
   * Puts `parts[0..count)` on the wire in one write, framed by `frames`. Returns the emitter to
   * wait on for `drain` when the connection took the bytes but wants no more for now.
   */
  write(parts: readonly (Buffer | undefined)[], count: number, frames: FrameSource): EventEmitter | undefined;
  /** Calls `listener` when the client goes (connection closed, stream reset). May call it more than once. */
  watch(listener: () => void): void;
  /** Undoes `watch`. */
  unwatch(listener: () => void): void;
  /** Cuts this stream off now, unsent bytes dropped: its client is not reading. */
  abort(): void;
  /** Ends the response cleanly, after what was written; cuts it off if the client has not taken the end within `graceMs`. */
  end(graceMs: number): void;
}
