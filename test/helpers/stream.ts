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
  /** True once the server ended the stream (or it broke). */
  readonly ended: boolean;
  /** Resolves once `check` holds for this stream; fails after `timeoutMs` showing what arrived. */
  until(what: string, check: (s: OpenStream) => boolean, timeoutMs?: number): Promise<void>;
  /** Waits for `n` events in all and returns them. */
  take(n: number, timeoutMs?: number): Promise<ParsedEvent[]>;
  close(): void;
}

/** Opens an event stream with undici (through `dispatcher` if given) and parses it with the spec-following parser. */
export async function openStream(
  url: string,
  headers: Record<string, string> = {},
  dispatcher?: Dispatcher,
): Promise<OpenStream> {
  const abort = new AbortController();
  const res = await request(url, { headers, signal: abort.signal, dispatcher });
  const parser = new SseParser();
  const decoder = new TextDecoder();
  const waiters = new Set<() => void>();
  let raw = "";
  let ended = false;
  const wake = () => {
    for (const waiter of waiters) waiter();
  };
  void (async () => {
    try {
      for await (const chunk of res.body) {
        const text = decoder.decode(chunk as Buffer, { stream: true });
        raw += text;
        parser.feed(text);
        wake();
      }
    } catch {
      // aborted by close(), or the connection broke: either way the stream has ended
    }
    ended = true;
    wake();
  })();

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
      return ended;
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
    close: () => abort.abort(),
  };
  return stream;
}
