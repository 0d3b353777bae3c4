import { encodeEvent } from "../sse/encode.js";

/** What `TokenExpiry` needs of a stream (an `SseStream`). */
export interface ExpiringStream {
  send(bytes: Buffer): void;
  end(): void;
  onClose(handler: () => void): void;
}

const SWEEP_MS = 1_000;

/** The event that tells a client why its stream ends: the name of the event a stream's last words carry. */
export const TOKEN_EXPIRED_EVENT = "token-expired";

/**
 * The last event of a stream whose token expired at `exp` (seconds): named, with no id (so the
 * client's Last-Event-ID still points at the last real event), and a message saying what to do.
 */
export function tokenExpiredEvent(exp: number): Buffer {
  const expiredAt = new Date(exp * 1000).toISOString();
  const data = {
    reason: TOKEN_EXPIRED_EVENT,
    expiredAt,
    message: `The token that opened this stream expired at ${expiredAt}: reconnect with a fresh token`,
  };
  return encodeEvent({ event: TOKEN_EXPIRED_EVENT, data: JSON.stringify(data) });
}

function expire(stream: ExpiringStream, exp: number): void {
  stream.send(tokenExpiredEvent(exp));
  stream.end();
}

/**
 * Ends streams when their token expires. JWT `exp` is in whole seconds, so streams are kept in one
 * bucket per expiry second and one shared timer, running only while a bucket exists, ends each
 * second's bucket when that second arrives: a tick costs the streams that expire in it, not a walk
 * over every stream, and there is no timer per stream. A stream leaves its bucket when it closes.
 * A stream is ended within a second after its token's `exp`, after a last `token-expired` event
 * that says why.
 */
export class TokenExpiry {
  readonly #buckets = new Map<number, Set<ExpiringStream>>();
  #timer: NodeJS.Timeout | undefined;
  /** The next expiry second to sweep; every earlier one is done. */
  #next = 0;

  /** Streams waiting for their token to expire. */
  get size(): number {
    let n = 0;
    for (const bucket of this.#buckets.values()) n += bucket.size;
    return n;
  }

  /** Ends `stream` once the second `exp` (a JWT `exp`) has come. */
  track(stream: ExpiringStream, exp: number): void {
    // jose accepts a fractional exp; the buckets are whole seconds, and rounding down never ends a token late.
    const expiresAt = Math.floor(exp);
    if (this.#timer === undefined) {
      this.#next = nowS();
      this.#timer = setInterval(() => this.#sweep(), SWEEP_MS);
      this.#timer.unref();
    }
    // Verified a moment ago, but its second may already have been swept.
    if (expiresAt < this.#next) {
      expire(stream, expiresAt);
      return;
    }
    let bucket = this.#buckets.get(expiresAt);
    if (bucket === undefined) {
      bucket = new Set();
      this.#buckets.set(expiresAt, bucket);
    }
    bucket.add(stream);
    stream.onClose(() => this.#untrack(stream, expiresAt));
  }

  /** Stops the timer; streams still tracked are left open. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#buckets.clear();
  }

  #untrack(stream: ExpiringStream, expiresAt: number): void {
    const bucket = this.#buckets.get(expiresAt);
    if (!bucket?.delete(stream)) return;
    if (bucket.size === 0) this.#buckets.delete(expiresAt);
    if (this.#buckets.size === 0) this.stop();
  }

  #sweep(): void {
    const now = nowS();
    for (; this.#next <= now; this.#next++) {
      const bucket = this.#buckets.get(this.#next);
      if (bucket === undefined) continue;
      this.#buckets.delete(this.#next);
      for (const stream of bucket) expire(stream, this.#next);
    }
    if (this.#buckets.size === 0) this.stop();
  }
}

function nowS(): number {
  return Math.floor(Date.now() / 1000);
}
