import type { IdScheme } from "./protocol.js";

const LF = 0x0a;
const SPACE = 0x20;
const QUOTE = 0x22;
const COLON = 0x3a;
/** nchan's `<seconds>:<n>` becomes seconds × this + n: n counts one channel's messages in one second. */
const TAGS_PER_SECOND = 1_000_000;
const ID = Buffer.from("id:");
const DATA = Buffer.from("data:");

function isDigit(byte: number | undefined): boolean {
  return byte !== undefined && byte >= 0x30 && byte <= 0x39;
}

/**
 * Finds events in the body of an event stream cheaply, for a load generator: no full SSE parse.
 * It reports, per event, the number that ends its `id` (`k2x9q1-42` → 42, `42` → 42; with the
 * `time:tag` scheme, `1796050381:7` → 1796050381 × 10⁶ + 7) and the number that starts its `data`
 * (the publisher's timestamp). Works across any read boundaries and
 * around chunked-encoding framing, as long as a server never splits one event across chunks.
 * It relies on `id:` and `data:` appearing nowhere else: the bench's payloads are digits and `x`.
 */
export class EventScanner {
  readonly #onEvent: (id: number, stamp: number) => void;
  readonly #timeTag: boolean;
  #carry: Buffer | undefined;

  constructor(onEvent: (id: number, stamp: number) => void, ids: IdScheme = "sequence") {
    this.#onEvent = onEvent;
    this.#timeTag = ids === "time:tag";
  }

  /** Bytes held back because their event is not complete yet. */
  get pendingBytes(): number {
    return this.#carry?.length ?? 0;
  }

  feed(chunk: Buffer): void {
    const buf = this.#carry === undefined ? chunk : Buffer.concat([this.#carry, chunk]);
    this.#carry = undefined;
    const end = buf.lastIndexOf(LF);
    if (end === -1) {
      this.#carry = buf;
      return;
    }
    let pos = 0;
    for (;;) {
      const at = buf.indexOf(ID, pos);
      if (at === -1 || at > end) break;
      const idEnd = buf.indexOf(LF, at);
      const data = idEnd === -1 ? -1 : buf.indexOf(DATA, idEnd);
      const dataEnd = data === -1 ? -1 : buf.indexOf(LF, data);
      if (dataEnd === -1 || dataEnd > end) {
        this.#carry = Buffer.from(buf.subarray(at));
        return;
      }
      let id = 0;
      let scale = 1;
      let p = idEnd - 1;
      for (; isDigit(buf[p]); p--) {
        id += ((buf[p] as number) - 0x30) * scale;
        scale *= 10;
      }
      if (this.#timeTag && buf[p] === COLON) {
        scale = TAGS_PER_SECOND;
        for (p--; isDigit(buf[p]); p--) {
          id += ((buf[p] as number) - 0x30) * scale;
          scale *= 10;
        }
      }
      let i = data + DATA.length;
      if (buf[i] === SPACE) i++;
      if (buf[i] === QUOTE) i++;
      let stamp = 0;
      for (; isDigit(buf[i]); i++) stamp = stamp * 10 + ((buf[i] as number) - 0x30);
      this.#onEvent(id, stamp);
      pos = dataEnd + 1;
    }
    if (end + 1 < buf.length) this.#carry = Buffer.from(buf.subarray(end + 1));
  }
}
