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
}

/**
 * One open `text/event-stream` response. Writes are queued and handed to the socket in one write
 * per flush (see `StreamRegistry`), so N events in one turn of the event loop cost one syscall.
 * Never throws on write: a closed stream ignores writes.
 */
export class SseStream {
  readonly #res: ServerResponse;
  readonly #socket: Socket;
  readonly #owner: StreamOwner;
  readonly #maxBufferedBytes: number;
  readonly #onClosedBound = () => this.#onClosed();
  #queue: Buffer[] = [];
  #queuedBytes = 0;
  /** The socket refused the last write until it drains. */
  #backedUp = false;
  #closed = false;
  #closeHandlers: (() => void)[] = [];
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
    if (this.#queue.push(bytes) === 1) this.#owner.scheduleFlush(this);
  }

  /** Hands the queued bytes to the socket in one write, or drops the stream if it is too far behind. */
  flush(): void {
    const queue = this.#queue;
    if (this.#closed || queue.length === 0) return;
    this.#queue = [];
    this.#queuedBytes = 0;
    // What the client has not taken yet from earlier flushes: past the bound, the client is not
    // keeping up, and holding more for it would let one reader grow the server without limit.
    const unsent = this.#res.writableLength;
    if (unsent > this.#maxBufferedBytes) {
      this.dropTooSlow(unsent);
      return;
    }
    this.#backedUp = !this.#res.write(queue.length === 1 ? queue[0] : Buffer.concat(queue));
  }

  /**
   * Flushes now and resolves once the socket can take more: `true` to go on writing, `false` if
   * the stream closed meanwhile. For senders of many events at once (replay), so that one client
   * never holds more than a batch.
   */
  drain(): Promise<boolean> {
    this.flush();
    if (this.#closed) return Promise.resolve(false);
    if (!this.#backedUp) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = () => {
        this.#res.off("drain", done);
        this.#backedUp = false;
        resolve(!this.#closed);
      };
      this.#res.once("drain", done);
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
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#res.off("close", this.#onClosedBound);
    this.#socket.off("close", this.#onClosedBound);
    this.#owner.released(this);
    for (const handler of this.#closeHandlers) handler();
    this.#closeHandlers = [];
  }
}
