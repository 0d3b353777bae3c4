import type { EventEmitter } from "node:events";
import type { FrameSource, StreamWriter } from "./stream-writer.js";

/** How long a stream ended by the server waits for its client to take the end before the socket is cut. */
const END_GRACE_MS = 5_000;

/** The part of `StreamRegistry` a stream talks to. */
export interface StreamOwner extends FrameSource {
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
 * One open `text/event-stream` response, over any protocol. Writes are queued and handed to the
 * `StreamWriter` in one write per flush (see `StreamRegistry`), so N events in one turn of the
 * event loop cost one write. Never throws on write: a closed stream ignores writes.
 */
export class SseStream {
  readonly #writer: StreamWriter;
  readonly #owner: StreamOwner;
  readonly #maxBufferedBytes: number;
  readonly #onClosedBound = () => this.#onClosed();
  /** Queued bytes in `[0, #queued)`; the array is kept between flushes, and emptied of references. */
  readonly #queue: (Buffer | undefined)[] = [];
  #queued = 0;
  #queuedBytes = 0;
  /** The connection wants no more after the last write until this emitter drains. */
  #backedUp: EventEmitter | undefined;
  #closed = false;
  /** Made to size for the first two handlers (every stream has two): grown by a push, it would hold 16 slots. */
  #closeHandlers: (() => void)[] | undefined;
  /** `owner.beat` at the last write: the heartbeat goes to streams that stayed idle a whole period. */
  lastActiveBeat: number;

  /** `writer` must be open (head sent) already. */
  constructor(writer: StreamWriter, owner: StreamOwner, maxBufferedBytes: number) {
    this.#writer = writer;
    this.#owner = owner;
    this.#maxBufferedBytes = maxBufferedBytes;
    this.lastActiveBeat = owner.beat;
    writer.watch(this.#onClosedBound);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Bytes waiting for this client: queued here, plus handed to the connection but not yet taken. */
  get bufferedBytes(): number {
    return this.#queuedBytes + this.#writer.unsentBytes;
  }

  /** Queues bytes for the next flush. */
  send(bytes: Buffer): void {
    if (this.#closed) return;
    this.lastActiveBeat = this.#owner.beat;
    this.#queuedBytes += bytes.length;
    this.#queue[this.#queued++] = bytes;
    if (this.#queued === 1) this.#owner.scheduleFlush(this);
  }

  /** Hands the queued bytes to the writer in one write, or drops the stream if it is too far behind. */
  flush(): void {
    const count = this.#queued;
    if (this.#closed || count === 0) return;
    const queue = this.#queue;
    this.#queued = 0;
    this.#queuedBytes = 0;
    // What the client has not taken yet from earlier flushes: past the bound, the client is not
    // keeping up, and holding more for it would let one reader grow the server without limit.
    const unsent = this.#writer.unsentBytes;
    if (unsent > this.#maxBufferedBytes) {
      queue.fill(undefined, 0, count);
      this.dropTooSlow(unsent);
      return;
    }
    this.#backedUp = this.#writer.write(queue, count, this.#owner);
    queue.fill(undefined, 0, count);
  }

  /**
   * Flushes now and resolves once the connection can take more: `true` to go on writing, `false` if
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
    this.#writer.abort();
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
    this.#writer.end(END_GRACE_MS);
  }

  /** Releases a stream whose client left before it was set up (while its request was still being checked). */
  releaseIfGone(): void {
    if (this.#writer.gone) this.#onClosed();
  }

  #onClosed(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue.length = 0;
    this.#queued = 0;
    this.#queuedBytes = 0;
    this.#writer.unwatch(this.#onClosedBound);
    this.#owner.released(this);
    const handlers = this.#closeHandlers ?? [];
    this.#closeHandlers = undefined;
    for (const handler of handlers) handler();
  }
}
