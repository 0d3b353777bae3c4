import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { FastifyReply } from "fastify";
import { ConnectionLimitError, IpConnectionLimitError } from "../errors.js";
import { clientKey } from "../limits/client-key.js";
import { encodeRetry, HEARTBEAT_BYTES } from "./encode.js";
import { isEndWatched } from "./end-watched.js";
import { Http1Writer } from "./http1-writer.js";
import { Http2Writer } from "./http2-writer.js";
import { SseStream, type StreamOwner } from "./sse-stream.js";
import type { StreamWriter } from "./stream-writer.js";

/** Options for `StreamRegistry`. */
export interface StreamRegistryOptions {
  heartbeatMs: number;
  retryMs: number;
  /** Each stream announces `retryMs` plus a random delay in [0, retryJitterMs]; unset: half of `retryMs`. */
  retryJitterMs?: number;
  maxSubscriberBufferBytes: number;
  /** Open streams, all clients together; 0 for no limit. */
  maxConnections?: number;
  /** Open streams from one client (`clientKey(request.ip)`: an IPv6 /64 counts as one); 0 for no limit. */
  maxConnectionsPerIp?: number;
  /** Told when a stream is dropped for being too slow. */
  onTooSlow?: (unsentBytes: number) => void;
}

const SSE_HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache",
  // nginx and some other proxies buffer responses unless told not to.
  "x-accel-buffering": "no",
};

const CRLF = "\r\n";

/**
 * Distinct `retry:` lines a registry encodes, evenly spaced over the jitter range. Streams pick one
 * at random and keep no copy, so the jitter costs no bytes per stream.
 */
const RETRY_LINES = 64;

/**
 * The `retry:` lines streams choose from: `retryMs`, `retryMs + jitterMs` and evenly spaced values
 * between (one line, `retryMs`, when `jitterMs` is 0).
 */
function encodeRetryLines(retryMs: number, jitterMs: number): Buffer[] {
  const count = Math.min(RETRY_LINES, jitterMs + 1);
  if (count === 1) return [encodeRetry(retryMs)];
  return Array.from({ length: count }, (_, i) => encodeRetry(retryMs + Math.round((i * jitterMs) / (count - 1))));
}

/**
 * `parts[0..count)` as one Buffer; with `chunked`, framed as one HTTP/1.1 chunk
 * (`<size in hex>CRLF<bytes>CRLF`, RFC 9112 §7.1), exactly what `ServerResponse.write` would send.
 */
function buildFrame(parts: readonly (Buffer | undefined)[], count: number, chunked: boolean): Buffer {
  let size = 0;
  for (let i = 0; i < count; i++) size += (parts[i] as Buffer).length;
  if (!chunked && count === 1) return parts[0] as Buffer;
  const head = chunked ? `${size.toString(16)}${CRLF}` : "";
  const frame = Buffer.allocUnsafe(head.length + size + (chunked ? 2 : 0));
  let at = frame.write(head, 0, "latin1");
  for (let i = 0; i < count; i++) at += (parts[i] as Buffer).copy(frame, at);
  if (chunked) frame.write(CRLF, at, "latin1");
  return frame;
}

/** The writer for the protocol the request came in on (an HTTPS server answers HTTP/2 and HTTP/1.1 alike). */
function createWriter(
  req: IncomingMessage | Http2ServerRequest,
  res: ServerResponse | Http2ServerResponse,
): StreamWriter {
  return req.httpVersionMajor === 2
    ? new Http2Writer(res as Http2ServerResponse)
    : new Http1Writer(req as IncomingMessage, res as ServerResponse);
}

/** One cached frame: the parts it was built from, and the bytes. */
interface CachedFrame {
  parts: (Buffer | undefined)[];
  bytes: Buffer | undefined;
}

/**
 * Every open event stream of the process, of every kind. Owns the one heartbeat timer (running
 * only while a stream is open; a stream silent for `heartbeatMs` gets a comment) and the one
 * flush per event-loop turn that batches writes.
 */
export class StreamRegistry implements StreamOwner {
  readonly #options: StreamRegistryOptions;
  /** When a node dies, its clients come back after the delay they were told: spread over these. */
  readonly #retryLines: Buffer[];
  readonly #streams = new Set<SseStream>();
  /** Open streams per client address, for `maxConnectionsPerIp`. */
  readonly #perIp = new Map<string, number>();
  #dirty: SseStream[] = [];
  #flushScheduled = false;
  /**
   * The last frame built for each framing (raw, chunked) and the parts it was built from: most
   * streams share it. Two slots, so HTTP/1.1 and HTTP/2 streams of a topic, flushed in any order,
   * still share one frame per protocol.
   */
  readonly #frames: [raw: CachedFrame, chunked: CachedFrame] = [
    { parts: [], bytes: undefined },
    { parts: [], bytes: undefined },
  ];
  #heartbeat: NodeJS.Timeout | undefined;
  /** Half-periods of the heartbeat timer so far. */
  beat = 0;
  /** Streams dropped so far for holding more than `maxSubscriberBufferBytes` unsent. */
  closedTooSlow = 0;

  constructor(options: StreamRegistryOptions) {
    this.#options = options;
    const jitterMs = options.retryJitterMs ?? Math.floor(options.retryMs / 2);
    this.#retryLines = encodeRetryLines(options.retryMs, jitterMs);
  }

  /** Open streams right now. */
  get size(): number {
    return this.#streams.size;
  }

  /** Bytes waiting for clients across all streams (a walk over every stream: for `/stats`, not hot paths). */
  bufferedBytes(): number {
    let total = 0;
    for (const stream of this.#streams) total += stream.bufferedBytes;
    return total;
  }

  /**
   * Takes over `reply` and starts an event stream on it: headers set so far (CORS) plus the SSE
   * headers, then the `retry:` line (with its jitter), flushed at once so clients see the stream open. Over a
   * connection limit it throws instead (503 or 429, with `Retry-After`) and nothing is opened.
   * The limits count streams, not connections: HTTP/2 streams sharing one connection count one each.
   */
  open(reply: FastifyReply): SseStream {
    const ip = clientKey(reply.request.ip);
    const fromIp = this.#perIp.get(ip) ?? 0;
    this.#admit(reply, fromIp);
    reply.hijack();
    const headers: Record<string, string | number | string[]> = { ...SSE_HEADERS };
    for (const [name, value] of Object.entries(reply.getHeaders())) {
      if (value !== undefined) headers[name] = value;
    }
    const writer = createWriter(reply.request.raw, reply.raw);
    const lines = this.#retryLines;
    writer.open(headers, lines[Math.floor(Math.random() * lines.length)] as Buffer);
    if (writer instanceof Http1Writer && !isEndWatched(reply)) writer.release();
    const stream = new SseStream(writer, this, this.#options.maxSubscriberBufferBytes);
    this.#streams.add(stream);
    this.#perIp.set(ip, fromIp + 1);
    stream.onClose(() => {
      const n = (this.#perIp.get(ip) ?? 1) - 1;
      if (n === 0) this.#perIp.delete(ip);
      else this.#perIp.set(ip, n);
    });
    if (this.#heartbeat === undefined) {
      // Ticking at half the period bounds a stream's silence to one period, whenever its last write was.
      this.#heartbeat = setInterval(() => this.#beat(), Math.max(1, Math.floor(this.#options.heartbeatMs / 2)));
      this.#heartbeat.unref();
    }
    // The client may have gone while an await before `open` (a token check) ran: its close events are past.
    stream.releaseIfGone();
    return stream;
  }

  /** Ends every open stream cleanly (on shutdown); clients reconnect after their retry delay. */
  endAll(): void {
    for (const stream of [...this.#streams]) stream.end();
  }

  scheduleFlush(stream: SseStream): void {
    this.#dirty.push(stream);
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    // After the I/O callbacks of this turn: every event published in the turn goes out in one
    // write per stream, well within a millisecond, never on a long timer.
    setImmediate(() => this.#flush());
  }

  released(stream: SseStream): void {
    this.#streams.delete(stream);
    if (this.#streams.size === 0 && this.#heartbeat !== undefined) {
      clearInterval(this.#heartbeat);
      this.#heartbeat = undefined;
    }
  }

  tooSlow(_stream: SseStream, unsentBytes: number): void {
    this.closedTooSlow++;
    this.#options.onTooSlow?.(unsentBytes);
  }

  frame(parts: readonly (Buffer | undefined)[], count: number, chunked: boolean): Buffer {
    const cached = this.#frames[chunked ? 1 : 0];
    const last = cached.parts;
    let same = cached.bytes !== undefined && count === last.length;
    for (let i = 0; same && i < count; i++) same = parts[i] === last[i];
    if (same) return cached.bytes as Buffer;
    const frame = buildFrame(parts, count, chunked);
    cached.bytes = frame;
    cached.parts = parts.slice(0, count);
    return frame;
  }

  #admit(reply: FastifyReply, fromIp: number): void {
    const { maxConnections = 0, maxConnectionsPerIp = 0, retryMs } = this.#options;
    // Streams end at unpredictable times: the reconnection delay is as good a hint as any.
    const retryAfterS = Math.max(1, Math.ceil(retryMs / 1000));
    if (maxConnections > 0 && this.#streams.size >= maxConnections) {
      reply.header("retry-after", retryAfterS);
      throw new ConnectionLimitError(maxConnections, retryAfterS);
    }
    if (maxConnectionsPerIp > 0 && fromIp >= maxConnectionsPerIp) {
      reply.header("retry-after", retryAfterS);
      throw new IpConnectionLimitError(maxConnectionsPerIp, retryAfterS);
    }
  }

  #flush(): void {
    const dirty = this.#dirty;
    this.#dirty = [];
    this.#flushScheduled = false;
    for (const stream of dirty) stream.flush();
    // Nothing to share with the next turn's streams: let the bytes go.
    for (const cached of this.#frames) {
      cached.bytes = undefined;
      cached.parts = [];
    }
  }

  #beat(): void {
    this.beat++;
    for (const stream of this.#streams) {
      if (this.beat - stream.lastActiveBeat >= 2) stream.send(HEARTBEAT_BYTES);
    }
  }
}
