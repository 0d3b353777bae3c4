import type { ServerResponse } from "node:http";
import type { Socket } from "node:net";

/** How long a stream ended by the server waits for its client to take the end before the socket is cut. */
const END_GRACE_MS = 5_000;

/** The part of `StreamRegistry` a stream talks to. */
export interface StreamOwner {
  /** Heartbeat periods so far; a stream records it on every write. */
  readonly beat: number;
  /** Asks for `flush()` to be called once the current burst of work is over. */
  scheduleFlush(stream: SseStream): void;
  /** Called once when the stream has closed, whatever closed it. */
  released(stream: SseStream): void;
  /** Called when a stream is dropped for holding more than `maxBufferedBytes` unsent. */
  tooSlow(stream: SseStream, unsentBytes: number): void;
  /**
   * The bytes that put `parts[0..count)` on the socket: one HTTP/1.1 chunk when `chunked`, else
   * the parts themselves. Streams of the same topics queue the very same Buffers, so the owner
   * may hand every one of them the same frame.
   */
  frame(parts: readonly (Buffer | undefined)[], count: number, chunked: boolean): Buffer;
}

/**
 * One open `text/event-stream` response. Writes are queued and handed to the socket in one write
 * per flush (see `StreamRegistry`), so N events in one turn of the event loop cost one syscall.
 * Once the response head is out, a flush writes straight to the socket, framing the chunk itself:
 * `ServerResponse.write` costs four buffered writes, a cork and a tick per call, which at
 * thousands of streams is most of the process's garbage. Never throws on write: a closed stream
 * ignores writes.
 */
export class SseStream {
  readonly #res: ServerResponse;
  readonly #socket: Socket;
  readonly #owner: StreamOwner;
  readonly #maxBufferedBytes: number;
  readonly #onClosedBound = () => this.#onClosed();
  /** Queued bytes in `[0, #queued)`; the array is kept between flushes, and emptied of references. */
  readonly #queue: (Buffer | undefined)[] = [];
  #queued = 0;
  #queuedBytes = 0;
  /** The socket refused the last write until this emitter (the socket, or the response) drains. */
  #backedUp: Socket | ServerResponse | undefined;
  #closed = false;
  /** Made to size for the first two handlers (every stream has two): grown by a push, it would hold 16 slots. */
  #closeHandlers: (() => void)[] | undefined;
  /** `owner.beat` at the last write: the heartbeat goes to streams that stayed idle a whole period. */
  lastActiveBeat: number;

  constructor(res: ServerResponse, socket: Socket, owner: StreamOwner, maxBufferedBytes: number) {
    this.#res = res;
    this.#socket = socket;
    this.#owner = owner;
    this.#maxBufferedBytes = maxBufferedBytes;
    this.lastActiveBeat = owner.beat;
    res.on("close", this.#onClosedBound);
    // A pipelined request's response is not attached to the socket yet and never sees it close.
    socket.on("close", this.#onClosedBound);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Bytes waiting for this client: queued here, plus handed to the socket but not yet sent. */
  get bufferedBytes(): number {
    return this.#queuedBytes + this.#res.writableLength;
  }

  /** Queues bytes for the next flush. */
  send(bytes: Buffer): void {
    if (this.#closed) return;
    this.lastActiveBeat = this.#owner.beat;
    this.#queuedBytes += bytes.length;
    this.#queue[this.#queued++] = bytes;
    if (this.#queued === 1) this.#owner.scheduleFlush(this);
  }

  /** Hands the queued bytes to the socket in one write, or drops the stream if it is too far behind. */
  flush(): void {
    const count = this.#queued;
    if (this.#closed || count === 0) return;
    const queue = this.#queue;
    this.#queued = 0;
    this.#queuedBytes = 0;
    // What the client has not taken yet from earlier flushes: past the bound, the client is not
    // keeping up, and holding more for it would let one reader grow the server without limit.
    const unsent = this.#res.writableLength;
    if (unsent > this.#maxBufferedBytes) {
      queue.fill(undefined, 0, count);
      this.dropTooSlow(unsent);
      return;
    }
    const res = this.#res;
    if (res.socket === this.#socket) {
      const frame = this.#owner.frame(queue, count, res.chunkedEncoding);
      this.#backedUp = this.#socket.write(frame) ? undefined : this.#socket;
    } else {
      // A pipelined response waits behind the one before it on this socket: the response holds
      // its bytes until its turn, so they must go through it.
      const bytes = this.#owner.frame(queue, count, false);
      this.#backedUp = res.write(bytes) ? undefined : res;
    }
    queue.fill(undefined, 0, count);
  }

  /**
   * Flushes now and resolves once the socket can take more: `true` to go on writing, `false` if
   * the stream closed meanwhile. For senders of many events at once (replay), so that one client
   * never holds more than a batch.
   */
  drain(): Promise<boolean> {
    this.flush();
    if (this.#closed) return Promise.resolve(false);
    const backedUp = this.#backedUp;
    if (backedUp === undefined) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = () => {
        backedUp.off("drain", done);
        this.#backedUp = undefined;
        resolve(!this.#closed);
      };
      backedUp.once("drain", done);
      this.onClose(done);
    });
  }

  /** Closes the stream because its client is not reading; it reconnects and resumes by id. */
  dropTooSlow(unsentBytes = this.bufferedBytes): void {
    if (this.#closed) return;
    this.#owner.tooSlow(this, unsentBytes);
    this.#socket.destroy();
    this.#onClosed();
  }

  /** Runs `handler` once when the stream closes (client gone, dropped, or ended by the server). */
  onClose(handler: () => void): void {
    if (this.#closed) handler();
    else if (this.#closeHandlers === undefined) this.#closeHandlers = [handler];
    else if (this.#closeHandlers.length === 1) this.#closeHandlers = [this.#closeHandlers[0] as () => void, handler];
    else this.#closeHandlers.push(handler);
  }

  /**
   * Sends what is queued and ends the response cleanly, so the client reconnects. The stream is
   * released at once (later sends are ignored); a client that never takes the end is cut off
   * after `END_GRACE_MS`.
   */
  end(): void {
    if (this.#closed) return;
    this.flush();
    this.#onClosed();
    const socket = this.#socket;
    const cutOff = setTimeout(() => socket.destroy(), END_GRACE_MS);
    cutOff.unref();
    socket.once("close", () => clearTimeout(cutOff));
    // Ending the socket too: the client must reconnect, not keep a kept-alive socket to a closing server.
    this.#res.end(() => socket.end());
  }

  /** Releases a stream whose client left before it was set up (while its request was still being checked). */
  releaseIfGone(): void {
    if (this.#socket.destroyed || this.#res.destroyed) this.#onClosed();
  }

  #onClosed(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue.length = 0;
    this.#queued = 0;
    this.#queuedBytes = 0;
    this.#res.off("close", this.#onClosedBound);
    this.#socket.off("close", this.#onClosedBound);
    this.#owner.released(this);
    const handlers = this.#closeHandlers ?? [];
    this.#closeHandlers = undefined;
    for (const handler of handlers) handler();
  }
}
