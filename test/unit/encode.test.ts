import { describe, expect, it } from "vitest";
import { encodeEvent, encodeRetry, HEARTBEAT_BYTES } from "../../src/sse/encode.js";
import { parseSse } from "../helpers/sse-parser.js";

const text = (b: Buffer) => b.toString("utf8");

describe("encodeEvent", () => {
  it("writes id, event, retry and data, then a blank line", () => {
    expect(text(encodeEvent({ id: "7", event: "update", retry: 5000, data: "hi" }))).toBe(
      "id: 7\nevent: update\nretry: 5000\ndata: hi\n\n",
    );
  });

  it("omits event for the default type message, and absent fields", () => {
    expect(text(encodeEvent({ event: "message", data: "x" }))).toBe("data: x\n\n");
  });

  it("writes an empty id, which clears the client's last event id", () => {
    expect(text(encodeEvent({ id: "", data: "x" }))).toBe("id: \ndata: x\n\n");
  });

  it("splits LF, CR and CRLF in data into one data line each", () => {
    expect(text(encodeEvent({ data: "a\nb\rc\r\nd" }))).toBe("data: a\ndata: b\ndata: c\ndata: d\n\n");
    expect(parseSse(text(encodeEvent({ data: "a\r\nb" }))).events[0]?.data).toBe("a\nb");
  });

  it("keeps empty data and trailing or blank lines as events a client receives", () => {
    expect(text(encodeEvent({ data: "" }))).toBe("data: \n\n");
    expect(parseSse(text(encodeEvent({ data: "" }))).events).toEqual([{ type: "message", data: "", lastEventId: "" }]);
    expect(parseSse(text(encodeEvent({ data: "a\n\nb\n" }))).events[0]?.data).toBe("a\n\nb\n");
  });

  it("keeps leading spaces and colons in values", () => {
    const parsed = parseSse(text(encodeEvent({ id: " 1", event: " e:x", data: "  two: spaces" })));
    expect(parsed.events[0]).toEqual({ type: " e:x", data: "  two: spaces", lastEventId: " 1" });
  });

  it("encodes unicode as UTF-8", () => {
    const bytes = encodeEvent({ data: "héllo ✓ 😀" });
    expect(bytes.includes(Buffer.from("😀", "utf8"))).toBe(true);
    expect(parseSse(text(bytes)).events[0]?.data).toBe("héllo ✓ 😀");
  });

  it.each(["a\nb", "a\rb", "a\0b"])("refuses an id or event containing a line break or NUL: %j", (bad) => {
    expect(() => encodeEvent({ id: bad, data: "x" })).toThrow(new TypeError("SSE id must not contain CR, LF or NUL"));
    expect(() => encodeEvent({ event: bad, data: "x" })).toThrow(
      new TypeError("SSE event must not contain CR, LF or NUL"),
    );
  });
});

describe("stream framing", () => {
  it("starts streams with a retry line that dispatches nothing", () => {
    const parsed = parseSse(text(encodeRetry(3000)));
    expect(parsed.retry).toBe(3000);
    expect(parsed.events).toEqual([]);
  });

  it("sends heartbeats as a comment that dispatches nothing", () => {
    const parsed = parseSse(text(HEARTBEAT_BYTES));
    expect(parsed.comments).toEqual([""]);
    expect(parsed.events).toEqual([]);
  });
});
