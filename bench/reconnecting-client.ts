import { connect, type Socket } from "node:net";

/** What a `ReconnectingClient` tells its owner. */
export interface ClientEvents {
  /** A stream opened (a 200 with the SSE headers). */
  open(client: ReconnectingClient): void;
  /** An event of the default type arrived, with its id. */
  message(client: ReconnectingClient, id: string): void;
  /** An event named `reset`: the server could not resume from the client's Last-Event-ID. */
  reset(client: ReconnectingClient, data: string): void;
  /** A response other than 200: `<status> <code from the JSON body>`. */
  refused(client: ReconnectingClient, reason: string): void;
  /** An attempt that got no response (ECONNREFUSED, ECONNRESET, …). */
  failed(client: ReconnectingClient, code: string): void;
  /** An open stream ended. */
  dropped(client: ReconnectingClient): void;
}

const HEAD_END = Buffer.from("\r\n\r\n");
const LF = 0x0a;
/** What an `EventSource` waits before its first reconnection when the server never said `retry:`. */
const DEFAULT_RETRY_MS = 3_000;

/**
 * A lean `EventSource` over raw `node:net`, for holding thousands of subscribers in one process
 * (the `eventsource` package costs a fetch, a stream reader and a TextDecoder per client). It
 * follows the reconnection rules of WHATWG HTML §9.2 (Server-sent events):
 * - it parses the stream as the spec says (fields `id`, `data`, `event`, `retry`; an empty line
 *   dispatches; the last event id is set at dispatch, even for an event without data), over
 *   HTTP/1.1 chunked framing; text is decoded as Latin-1, enough for the bench's ASCII events;
 * - when a stream ends or a connection fails, it waits the last `retry:` it was told (3 s before
 *   any) and reconnects with `Last-Event-ID` set to the last event id;
 * - it differs where a browser would give up: after a 429 or 503 (a connection limit) it waits
 *   `retry` or the `Retry-After`, whichever is longer, and tries again, as an application wrapping
 *   `EventSource` does (Herald's dashboard does the same). Every such answer is counted.
 * With several ports it behaves as if behind a load balancer that retries the next backend at once
 * when a connection is refused (nginx `proxy_next_upstream error`): a failed attempt moves to the next
 * port right away, and the retry delay applies only once every port has failed in a row.
 */
export class ReconnectingClient {
  readonly #ports: readonly number[];
  readonly #localAddress: string;
  readonly #path: string;
  readonly #events: ClientEvents;
  #port = 0;
  /** Ports tried in a row without a response. */
  #failedInRow = 0;
  #socket: Socket | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  // Response state.
  #head: Buffer | undefined;
  #status = 0;
  #retryAfterMs = 0;
  #body = "";
  #bodyLength = 0;
  #bodyChunked = false;
  #open = false;
  // Chunked framing: bytes left in the current chunk, and a partial size line.
  #chunkLeft = 0;
  #sizeLine = "";
  // Event stream parser state (WHATWG §9.2.6).
  #partial = "";
  #idBuffer = "";
  #data = "";
  #hasData = false;
  #type = "";
  /** The last event id: sent as `Last-Event-ID` on reconnection. */
  lastEventId = "";
  /** The reconnection time, as the server last set it with `retry:`. */
  retryMs = DEFAULT_RETRY_MS;
  /** Owner's bookkeeping: the event number expected next, and when the last stream opened. */
  next = 1;
  opened = 0;
  openedAt = 0;

  constructor(ports: readonly number[], localAddress: string, path: string, events: ClientEvents) {
    this.#ports = ports;
    this.#localAddress = localAddress;
    this.#path = path;
    this.#events = events;
  }

  connect(): void {
    if (this.#closed) return;
    this.#timer = undefined;
    this.#head = Buffer.alloc(0);
    this.#status = 0;
    this.#open = false;
    this.#chunkLeft = 0;
    this.#sizeLine = "";
    this.#partial = "";
    this.#data = "";
    this.#hasData = false;
    this.#type = "";
    this.#idBuffer = this.lastEventId;
    const port = this.#ports[this.#port] as number;
    const socket = connect({ port, host: "127.0.0.1", localAddress: this.#localAddress });
    this.#socket = socket;
    let errorCode: string | undefined;
    socket.setNoDelay(true);
    socket.once("connect", () => {
      const resume = this.lastEventId === "" ? "" : `Last-Event-ID: ${this.lastEventId}\r\n`;
      socket.write(
        `GET ${this.#path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n${resume}\r\n`,
      );
    });
    socket.on("data", (chunk: Buffer) => this.#onData(chunk));
    socket.on("error", (err: NodeJS.ErrnoException) => {
      errorCode = err.code ?? err.message;
    });
    socket.once("close", () => {
      if (this.#socket !== socket || this.#closed) return;
      this.#socket = undefined;
      if (this.#open) {
        this.#events.dropped(this);
        this.#failedInRow = 0;
        this.#schedule(this.retryMs);
      } else if (this.#status !== 0) {
        this.#refused();
      } else {
        this.#events.failed(this, errorCode ?? "closed before a response");
        this.#failedInRow++;
        this.#port = (this.#port + 1) % this.#ports.length;
        if (this.#failedInRow < this.#ports.length) this.connect();
        else {
          this.#failedInRow = 0;
          this.#schedule(this.retryMs);
        }
      }
    });
  }

  /** What the client is doing: reading an open stream, waiting for an answer, or waiting to reconnect. */
  get state(): "open" | "connecting" | "waiting" | "closed" {
    if (this.#closed) return "closed";
    if (this.#open) return "open";
    return this.#socket === undefined ? "waiting" : "connecting";
  }

  /** Stops for good: closes the stream and never reconnects. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#socket?.destroy();
    this.#socket = undefined;
  }

  #schedule(ms: number): void {
    this.#timer = setTimeout(() => this.connect(), ms);
  }

  #refused(): void {
    // Herald's error bodies are JSON with a `code`; the regex also reads one in a chunked body.
    const code = /"code" *: *"([^"]*)"/.exec(this.#body)?.[1];
    this.#events.refused(this, `${this.#status}${code === undefined ? "" : ` ${code}`}`);
    this.#failedInRow = 0;
    this.#schedule(Math.max(this.retryMs, this.#retryAfterMs));
  }

  #onData(chunk: Buffer): void {
    if (this.#head !== undefined) {
      const head = this.#head.length === 0 ? chunk : Buffer.concat([this.#head, chunk]);
      const end = head.indexOf(HEAD_END);
      if (end === -1) {
        this.#head = head;
        return;
      }
      this.#head = undefined;
      const text = head.toString("latin1", 0, end);
      this.#status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0) || -1;
      const rest = head.subarray(end + 4);
      if (this.#status === 200) {
        this.#open = true;
        this.#failedInRow = 0;
        this.#events.open(this);
        if (rest.length > 0) this.#dechunk(rest);
      } else {
        this.#retryAfterMs = Number(/\r\nretry-after: *(\d+)/i.exec(text)?.[1] ?? 0) * 1000;
        this.#body = rest.toString("latin1");
        this.#bodyLength = Number(/\r\ncontent-length: *(\d+)/i.exec(text)?.[1] ?? 0);
        this.#bodyChunked = /\r\ntransfer-encoding: *chunked/i.test(text);
        this.#endRefusal();
      }
      return;
    }
    if (!this.#open) {
      this.#body += chunk.toString("latin1");
      this.#endRefusal();
      return;
    }
    this.#dechunk(chunk);
  }

  /** Once a refusal's body is complete, done with the connection: its close reports it. */
  #endRefusal(): void {
    const complete = this.#bodyChunked
      ? this.#body.startsWith("0\r\n") || this.#body.includes("\r\n0\r\n")
      : this.#body.length >= this.#bodyLength;
    if (complete) this.#socket?.destroy();
  }

  /** HTTP/1.1 chunked framing (RFC 9112 §7.1): passes each chunk's bytes on to the event parser. */
  #dechunk(buf: Buffer): void {
    let i = 0;
    while (i < buf.length) {
      if (this.#chunkLeft > 0) {
        const end = Math.min(buf.length, i + this.#chunkLeft);
        this.#parse(buf.toString("latin1", i, end));
        this.#chunkLeft -= end - i;
        i = end;
        continue;
      }
      const lf = buf.indexOf(LF, i);
      if (lf === -1) {
        this.#sizeLine += buf.toString("latin1", i);
        return;
      }
      const line = (this.#sizeLine + buf.toString("latin1", i, lf)).trim();
      this.#sizeLine = "";
      i = lf + 1;
      // The CRLF that ends each chunk's data reads as an empty size line.
      if (line === "") continue;
      const size = Number.parseInt(line, 16);
      if (size === 0) {
        // The last chunk: the server ended the response; the close that follows reconnects.
        this.#socket?.end();
        return;
      }
      this.#chunkLeft = size;
    }
  }

  /** WHATWG HTML §9.2.6, "Interpreting an event stream". */
  #parse(text: string): void {
    const all = this.#partial === "" ? text : this.#partial + text;
    let start = 0;
    for (;;) {
      const lf = all.indexOf("\n", start);
      if (lf === -1) break;
      const end = lf > start && all.charCodeAt(lf - 1) === 0x0d ? lf - 1 : lf;
      this.#line(all.slice(start, end));
      start = lf + 1;
    }
    this.#partial = all.slice(start);
  }

  #line(line: string): void {
    if (line === "") {
      this.#dispatch();
      return;
    }
    if (line.charCodeAt(0) === 0x3a) return;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.charCodeAt(0) === 0x20) value = value.slice(1);
    if (field === "id") {
      if (!value.includes("\0")) this.#idBuffer = value;
    } else if (field === "data") {
      this.#data += `${value}\n`;
      this.#hasData = true;
    } else if (field === "event") this.#type = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retryMs = Number(value);
  }

  #dispatch(): void {
    this.lastEventId = this.#idBuffer;
    const type = this.#type;
    const data = this.#data;
    const hasData = this.#hasData;
    this.#type = "";
    this.#data = "";
    this.#hasData = false;
    if (!hasData) return;
    if (type === "" || type === "message") this.#events.message(this, this.lastEventId);
    else if (type === "reset") this.#events.reset(this, data.slice(0, -1));
  }
}
