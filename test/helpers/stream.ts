import { type Dispatcher, request } from "undici";
import { type ParsedEvent, SseParser } from "./sse-parser.js";

export interface OpenStream {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** Events parsed so far, in order. */
  readonly events: ParsedEvent[];
  /** Comment lines seen so far (heartbeats). */
  readonly comments: string[];
  readonly retry: number | undefined;
  /** Everything received so far, decoded. */
  readonly raw: string;
  /** True once the stream is over, whatever ended it (see `endedBy`). */
  readonly ended: boolean;
  /**
   * How the stream ended: `"server"` when the server ended the response cleanly (the chunked body's
   * last chunk arrived), `"error"` when the connection broke (`error` says how), `"client"` after
   * `close()`; undefined while it is open.
   */
  readonly endedBy: "server" | "error" | "client" | undefined;
  /** What broke the connection, when `endedBy` is `"error"`. */
  readonly error: Error | undefined;
  /** Resolves once `check` holds for this stream; fails after `timeoutMs` showing what arrived. */
  until(what: string, check: (s: OpenStream) => boolean, timeoutMs?: number): Promise<void>;
  /** Waits for `n` events in all and returns them. */
  take(n: number, timeoutMs?: number): Promise<ParsedEvent[]>;
  close(): void;
  /** Starts reading a stream opened with `{ paused: true }`. */
  resume(): void;
}

/** Options for `openStream`. */
export interface OpenStreamOptions {
  /**
   * Read nothing until `resume()`: the body stays unread, so the server's writes back up once the
   * socket buffers are full, as with a client that is busy or on a slow link.
   */
  paused?: boolean;
  /** The undici dispatcher to send the request through (HTTPS, HTTP/2); the global one if absent. */
  dispatcher?: Dispatcher;
}

/** Opens an event stream with undici (through `options.dispatcher` if given) and parses it with the spec-following parser. */
export async function openStream(
  url: string,
  headers: Record<string, string> = {},
  options: OpenStreamOptions = {},
): Promise<OpenStream> {
  const abort = new AbortController();
  const res = await request(url, { headers, signal: abort.signal, dispatcher: options.dispatcher });
  const parser = new SseParser();
  const decoder = new TextDecoder();
  const waiters = new Set<() => void>();
  let raw = "";
  let endedBy: OpenStream["endedBy"];
  let error: Error | undefined;
  const wake = () => {
    for (const waiter of waiters) waiter();
  };
  let started = false;
  const read = async () => {
    if (started) return;
    started = true;
    try {
      for await (const chunk of res.body) {
        const text = decoder.decode(chunk as Buffer, { stream: true });
        raw += text;
        parser.feed(text);
        wake();
      }
      endedBy = "server";
    } catch (err) {
      if (abort.signal.aborted) {
        endedBy = "client";
      } else {
        endedBy = "error";
        error = err as Error;
      }
    }
    wake();
  };
  if (!options.paused) void read();

  const stream: OpenStream = {
    status: res.statusCode,
    headers: res.headers,
    events: parser.events,
    comments: parser.comments,
    get retry() {
      return parser.retry;
    },
    get raw() {
      return raw;
    },
    get ended() {
      return endedBy !== undefined;
    },
    get endedBy() {
      return endedBy;
    },
    get error() {
      return error;
    },
    until(what, check, timeoutMs = 5_000) {
      return new Promise((resolve, reject) => {
        const waiter = () => {
          if (!check(stream)) return;
          clearTimeout(timer);
          waiters.delete(waiter);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`timed out waiting for ${what}; received so far:\n${raw.slice(-2_000)}`));
        }, timeoutMs);
        waiters.add(waiter);
        waiter();
      });
    },
    async take(n, timeoutMs) {
      await stream.until(`${n} events`, (s) => s.events.length >= n, timeoutMs);
      return parser.events.slice(0, n);
    },
    close: () => {
      abort.abort();
      // A paused stream's body is never read: reading it now is what ends it.
      void read();
    },
    resume: () => void read(),
  };
  return stream;
}
