import { describe, expect, it } from "vitest";
import { EventScanner } from "../../bench/event-scanner.js";

/** `events` as one chunked-encoding body, several events per chunk, as Herald frames them. */
function chunkedBody(events: string[], perChunk: number): Buffer {
  let body = "retry: 3000\n\n:\n\n";
  for (let i = 0; i < events.length; i += perChunk) {
    const chunk = events.slice(i, i + perChunk).join("");
    body += `${Buffer.byteLength(chunk).toString(16)}\r\n${chunk}\r\n`;
  }
  return Buffer.from(body);
}

describe("the bench's event scanner", () => {
  it("finds every event's id number and timestamp, however the bytes are split", () => {
    const events = Array.from({ length: 50 }, (_, i) => `id: k2x9q1-${i + 1}\ndata: ${1000 + i} ${"x".repeat(i)}\n\n`);
    const body = chunkedBody(events, 7);
    for (const size of [1, 2, 3, 17, 64, body.length]) {
      const seen: [number, number][] = [];
      const scanner = new EventScanner((id, stamp) => seen.push([id, stamp]));
      for (let at = 0; at < body.length; at += size) scanner.feed(body.subarray(at, at + size));
      expect(seen).toEqual(events.map((_, i) => [i + 1, 1000 + i]));
      expect(scanner.pendingBytes).toBe(0);
    }
  });

  it("reads plain numeric ids, ids without a space, quoted data and named events", () => {
    const seen: [number, number][] = [];
    const scanner = new EventScanner((id, stamp) => seen.push([id, stamp]));
    scanner.feed(Buffer.from('id:7\nevent: message\ndata:"42 x"\n\nid: 8\ndata: 43 x\n\n'));
    expect(seen).toEqual([
      [7, 42],
      [8, 43],
    ]);
  });
});
