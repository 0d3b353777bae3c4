import type { ServerResponse } from "node:http";

/** The part of `StreamRegistry` a stream talks to. */
export interface StreamOwner {
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
  readonly #owner: StreamOwner;
  readonly #maxBufferedBytes: number;
  #queue: Buffer[] = [];
  #closed = false;
  #closeHandlers: (() => void)[] = [];
  /** Set by every write; cleared by the heartbeat timer, which writes only to streams that stayed idle. */
  active = false;

  constructor(res: ServerResponse, owner: StreamOwner, maxBufferedBytes: number) {
    this.#res = res;
    this.#owner = owner;
    this.#maxBufferedBytes = maxBufferedBytes;
    res.on("close", () => this.#onClosed());
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Queues bytes for the next flush. */
  send(bytes: Buffer): void {
    if (this.#closed) return;
    this.active = true;
    if (this.#queue.push(bytes) === 1) this.#owner.scheduleFlush(this);
  }

  /** Hands the queued bytes to the socket in one write, or drops the stream if it is too far behind. */
  flush(): void {
    const queue = this.#queue;
    if (this.#closed || queue.length === 0) return;
    this.#queue = [];
    // What the client has not taken yet from earlier flushes: past the bound, the client is not
    // keeping up, and holding more for it would let one reader grow the server without limit.
    const unsent = this.#res.writableLength;
    if (unsent > this.#maxBufferedBytes) {
      this.#owner.tooSlow(this, unsent);
      this.#res.destroy();
      return;
    }
    this.#res.write(queue.length === 1 ? queue[0] : Buffer.concat(queue));
  }

  /** Runs `handler` once when the stream closes (client gone, dropped, or ended by the server). */
  onClose(handler: () => void): void {
    if (this.#closed) handler();
    else this.#closeHandlers.push(handler);
  }

  /** Sends what is queued and ends the response cleanly, so the client reconnects. */
  end(): void {
    if (this.#closed) return;
    this.flush();
    const socket = this.#res.socket;
    // Ending the socket too: the client must reconnect, not keep a kept-alive socket to a closing server.
    this.#res.end(() => socket?.end());
  }

  #onClosed(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue = [];
    this.#owner.released(this);
    for (const handler of this.#closeHandlers) handler();
    this.#closeHandlers = [];
  }
}
