/**
 * The SSE wire format (WHATWG HTML, "Server-sent events", §9.2.5–9.2.6):
 * https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
 *
 * Every field is written as `name: value`. The parser strips exactly one space after the colon,
 * so always writing it keeps values that start with a space intact.
 */

/** An event as it goes on the wire. `data` is text; JSON values are encoded before they get here. */
export interface SseMessage {
  readonly id?: string;
  readonly event?: string;
  readonly retry?: number;
  readonly data: string;
}

/** Characters that would end a field early or make a parser drop it (NUL in `id`). */
const FORBIDDEN_IN_FIELD = /[\r\n\0]/;
/** CRLF, CR and LF each end a line in an event stream. */
const LINE_BREAK = /\r\n|\r|\n/;

/** Sent on idle streams: a comment line, ignored by every parser, that keeps proxies from timing out. */
export const HEARTBEAT_BYTES: Buffer = Buffer.from(":\n\n");

/** True when `value` can be an `id` or `event` field without breaking the line it is on. */
export function isSafeFieldValue(value: string): boolean {
  return !FORBIDDEN_IN_FIELD.test(value);
}

function field(name: string, value: string): string {
  if (!isSafeFieldValue(value)) {
    // Validation rejects these first; this guard makes field injection impossible even on a code path that forgot to.
    throw new TypeError(`SSE ${name} must not contain CR, LF or NUL`);
  }
  return `${name}: ${value}\n`;
}

/**
 * Encodes one event into the bytes every subscriber receives. Call once per event and share the
 * Buffer. An `id` of `""` is written (it clears the client's last event id); `event: message` is
 * omitted because it is the default.
 */
export function encodeEvent(message: SseMessage): Buffer {
  let out = "";
  if (message.id !== undefined) out += field("id", message.id);
  if (message.event !== undefined && message.event !== "message") out += field("event", message.event);
  if (message.retry !== undefined) out += `retry: ${message.retry}\n`;
  const { data } = message;
  if (data.indexOf("\n") === -1 && data.indexOf("\r") === -1) {
    out += `data: ${data}\n`;
  } else {
    for (const line of data.split(LINE_BREAK)) out += `data: ${line}\n`;
  }
  return Buffer.from(`${out}\n`);
}

/**
 * How many bytes `encodeEvent(message)` makes, without building them: for a bound checked before
 * an event is accepted. Each line of data costs 7 bytes besides its text (`data: ` and a newline),
 * which is what makes a body of newlines grow sevenfold on the wire.
 */
export function encodedSize(message: SseMessage): number {
  let size = 1;
  if (message.id !== undefined) size += 5 + Buffer.byteLength(message.id);
  if (message.event !== undefined && message.event !== "message") size += 8 + Buffer.byteLength(message.event);
  if (message.retry !== undefined) size += 8 + String(message.retry).length;
  const { data } = message;
  let lines = 1;
  let breakBytes = 0;
  for (let i = data.indexOf("\n"), j = data.indexOf("\r"); i !== -1 || j !== -1; ) {
    // The next line break: CR LF counts as one break of two bytes.
    const at = i === -1 ? j : j === -1 ? i : Math.min(i, j);
    const crlf = data.charCodeAt(at) === 13 && data.charCodeAt(at + 1) === 10;
    const next = at + (crlf ? 2 : 1);
    lines++;
    breakBytes += next - at;
    if (i !== -1 && i < next) i = data.indexOf("\n", next);
    if (j !== -1 && j < next) j = data.indexOf("\r", next);
  }
  return size + Buffer.byteLength(data) - breakBytes + 7 * lines;
}

/** The `retry:` line sent first on every stream; the blank line after it dispatches nothing. */
export function encodeRetry(retryMs: number): Buffer {
  return Buffer.from(`retry: ${retryMs}\n\n`);
}
