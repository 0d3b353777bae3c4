const LF = 0x0a;
const SPACE = 0x20;
const QUOTE = 0x22;
const ID = Buffer.from("id:");
const DATA = Buffer.from("data:");

function isDigit(byte: number | undefined): boolean {
  return byte !== undefined && byte >= 0x30 && byte <= 0x39;
}

/**
 * Finds events in the body of an event stream cheaply, for a load generator: no full SSE parse.
 * It reports, per event, the number that ends its `id` (`k2x9q1-42` → 42, `42` → 42) and the
 * number that starts its `data` (the publisher's timestamp). Works across any read boundaries and
 * around chunked-encoding framing, as long as a server never splits one event across chunks.
 * It relies on `id:` and `data:` appearing nowhere else: the bench's payloads are digits and `x`.
 */
export class EventScanner {
  readonly #onEvent: (id: number, stamp: number) => void;
  #carry: Buffer | undefined;

  constructor(onEvent: (id: number, stamp: number) => void) {
    this.#onEvent = onEvent;
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
      for (let i = idEnd - 1; isDigit(buf[i]); i--) {
        id += ((buf[i] as number) - 0x30) * scale;
        scale *= 10;
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
