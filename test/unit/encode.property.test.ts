import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { encodedSize, encodeEvent, isSafeFieldValue, type SseMessage } from "../../src/sse/encode.js";
import { SseParser } from "../helpers/sse-parser.js";

/** Any unicode text, with line breaks, NUL, colons and spaces made likely. */
const anyText = fc.string({
  unit: fc.oneof(
    { weight: 6, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }) },
    { weight: 1, arbitrary: fc.constantFrom("\r", "\n", "\r\n", "\0", ":", " ", "\uFEFF", "data: x", "id: 9") },
  ),
  maxLength: 60,
});

const message: fc.Arbitrary<SseMessage> = fc.record(
  {
    id: anyText,
    event: anyText.filter((e) => e !== ""),
    retry: fc.nat(),
    data: anyText,
  },
  { requiredKeys: ["data"] },
);

/** What a spec-following client must see for `m`. */
function expected(m: SseMessage, previousId: string) {
  return {
    type: m.event ?? "message",
    data: m.data.replace(/\r\n|\r/g, "\n"),
    lastEventId: m.id ?? previousId,
  };
}

const safe = (m: SseMessage) =>
  (m.id === undefined || isSafeFieldValue(m.id)) && (m.event === undefined || isSafeFieldValue(m.event));

describe("encodeEvent, for any event", () => {
  it("either refuses the event or produces bytes that parse back into exactly that event", () => {
    fc.assert(
      fc.property(message, (m) => {
        if (!safe(m)) {
          expect(() => encodeEvent(m)).toThrow(TypeError);
          return;
        }
        const parser = new SseParser();
        parser.feed(encodeEvent(m).toString("utf8"));
        expect(parser.events).toEqual([expected(m, "")]);
        expect(parser.retry).toBe(m.retry);
      }),
      { numRuns: 2_000 },
    );
  });

  it("keeps a sequence of events apart, however the bytes are split in transit", () => {
    fc.assert(
      fc.property(
        fc.array(message.filter(safe), { minLength: 1, maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        (messages, cuts) => {
          const bytes = Buffer.concat(messages.map((m) => encodeEvent(m)));
          const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
          const parser = new SseParser();
          const decoder = new TextDecoder();
          let from = 0;
          for (const to of [...points, bytes.length]) {
            parser.feed(decoder.decode(bytes.subarray(from, to), { stream: true }));
            from = to;
          }
          let lastId = "";
          const want = messages.map((m) => {
            const e = expected(m, lastId);
            lastId = e.lastEventId;
            return e;
          });
          expect(parser.events).toEqual(want);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("has exactly the size encodedSize predicts, so the size bound is checked without encoding", () => {
    fc.assert(
      fc.property(message.filter(safe), (m) => {
        expect(encodedSize(m)).toBe(encodeEvent(m).length);
      }),
      { numRuns: 2_000 },
    );
  });
});
