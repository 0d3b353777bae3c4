/**
 * A parser that follows the WHATWG event-stream interpretation rules to the letter
 * (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation),
 * written independently of Herald's encoder so tests can check the bytes Herald sends.
 * Feed it decoded text in chunks of any size.
 */
export interface ParsedEvent {
  type: string;
  data: string;
  lastEventId: string;
}

export class SseParser {
  readonly events: ParsedEvent[] = [];
  readonly comments: string[] = [];
  retry: number | undefined;
  #line = "";
  #skipLf = false;
  #data = "";
  #type = "";
  #lastEventId = "";

  /** Parses `text`; returns the events it completed. */
  feed(text: string): ParsedEvent[] {
    const before = this.events.length;
    let at = 0;
    // A CR at the end of the last chunk may be the first half of a CRLF.
    if (this.#skipLf && text.length > 0) {
      this.#skipLf = false;
      if (text[0] === "\n") at = 1;
    }
    // Searched once per chunk, not once per line: most streams never send a CR.
    let cr = text.indexOf("\r", at);
    for (;;) {
      if (cr !== -1 && cr < at) cr = text.indexOf("\r", at);
      const lf = text.indexOf("\n", at);
      const end = cr === -1 ? lf : lf === -1 ? cr : Math.min(cr, lf);
      if (end === -1) break;
      this.#processLine(this.#line + text.slice(at, end));
      this.#line = "";
      at = end + 1;
      if (text[end] === "\r") {
        if (at === text.length) this.#skipLf = true;
        else if (text[at] === "\n") at++;
      }
    }
    this.#line += text.slice(at);
    return this.events.slice(before);
  }

  #processLine(line: string): void {
    if (line === "") {
      this.#dispatch();
      return;
    }
    if (line.startsWith(":")) {
      this.comments.push(line.slice(1));
      return;
    }
    const colon = line.indexOf(":");
    const name = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "event") this.#type = value;
    else if (name === "data") this.#data += `${value}\n`;
    else if (name === "id") {
      if (!value.includes("\0")) this.#lastEventId = value;
    } else if (name === "retry") {
      if (/^[0-9]+$/.test(value)) this.retry = Number(value);
    }
  }

  #dispatch(): void {
    if (this.#data === "") {
      this.#type = "";
      return;
    }
    const data = this.#data.endsWith("\n") ? this.#data.slice(0, -1) : this.#data;
    this.events.push({ type: this.#type || "message", data, lastEventId: this.#lastEventId });
    this.#data = "";
    this.#type = "";
  }
}

/** Parses a whole stream body at once. */
export function parseSse(text: string): SseParser {
  const parser = new SseParser();
  parser.feed(text.startsWith("\uFEFF") ? text.slice(1) : text);
  parser.feed("");
  return parser;
}
