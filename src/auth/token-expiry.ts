/** What `TokenExpiry` needs of a stream (an `SseStream`). */
export interface ExpiringStream {
  end(): void;
  onClose(handler: () => void): void;
}

const SWEEP_MS = 1_000;

/**
 * Ends streams when their token expires. JWT `exp` is in whole seconds, so streams are kept in one
 * bucket per expiry second and one shared timer, running only while a bucket exists, ends each
 * second's bucket when that second arrives: a tick costs the streams that expire in it, not a walk
 * over every stream, and there is no timer per stream. A stream leaves its bucket when it closes.
 * A stream is ended within a second after its token's `exp`.
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
      stream.end();
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
      for (const stream of bucket) stream.end();
    }
    if (this.#buckets.size === 0) this.stop();
  }
}

function nowS(): number {
  return Math.floor(Date.now() / 1000);
}
