import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { type ExpiringStream, TokenExpiry } from "../../src/auth/token-expiry.js";

/** A stream that records being ended and closes like an SseStream does. */
function fakeStream() {
  const handlers: (() => void)[] = [];
  const stream = {
    ended: false,
    /** What was sent, and whether the stream had ended by then. */
    sent: [] as { text: string; afterEnd: boolean }[],
    send(bytes: Buffer) {
      stream.sent.push({ text: bytes.toString(), afterEnd: stream.ended });
    },
    end() {
      stream.ended = true;
      for (const handler of handlers.splice(0)) handler();
    },
    onClose(handler: () => void) {
      handlers.push(handler);
    },
    /** The client goes away. */
    disconnect() {
      for (const handler of handlers.splice(0)) handler();
    },
  };
  return stream satisfies ExpiringStream;
}

describe("TokenExpiry", () => {
  let expiry: TokenExpiry;
  const start = new Date("2030-01-01T00:00:00.250Z");
  const t0 = Math.floor(start.getTime() / 1000);
  beforeEach(() => {
    vi.useFakeTimers({ now: start });
    expiry = new TokenExpiry();
  });
  afterEach(() => {
    expiry.stop();
    vi.useRealTimers();
  });

  it("sends a token-expired event saying when and what to do, then ends the stream", () => {
    const stream = fakeStream();
    expiry.track(stream, t0 + 1);
    vi.advanceTimersByTime(2_000);
    expect(stream.ended).toBe(true);
    const expiredAt = new Date((t0 + 1) * 1000).toISOString();
    expect(stream.sent).toEqual([
      {
        text: `event: token-expired\ndata: {"reason":"token-expired","expiredAt":"${expiredAt}","message":"The token that opened this stream expired at ${expiredAt}: reconnect with a fresh token"}\n\n`,
        afterEnd: false,
      },
    ]);
  });

  it("ends each stream within a second after its exp, not before", () => {
    const soon = fakeStream();
    const later = fakeStream();
    expiry.track(soon, t0 + 2);
    expiry.track(later, t0 + 5);
    vi.advanceTimersByTime(1_740); // just before t0 + 2
    expect(soon.ended).toBe(false);
    vi.advanceTimersByTime(1_000);
    expect(soon.ended).toBe(true);
    expect(later.ended).toBe(false);
    expect(expiry.size).toBe(1);
    vi.advanceTimersByTime(3_000);
    expect(later.ended).toBe(true);
    expect(expiry.size).toBe(0);
  });

  it("frees a stream that disconnects first, and runs its one timer only while streams wait", () => {
    const streams = Array.from({ length: 3 }, fakeStream);
    for (const s of streams) expiry.track(s, t0 + 3_600);
    expect(vi.getTimerCount()).toBe(1);
    for (const s of streams) s.disconnect();
    expect(expiry.size).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(3_601_000);
    expect(streams.some((s) => s.ended)).toBe(false);
  });

  it("ends at once a stream whose exp second was already swept", () => {
    const first = fakeStream();
    expiry.track(first, t0 + 60);
    vi.advanceTimersByTime(2_000);
    const late = fakeStream();
    expiry.track(late, t0 + 1);
    expect(late.ended).toBe(true);
    expect(first.ended).toBe(false);
  });
});
