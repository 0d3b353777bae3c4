import { describe, expect, it } from "vitest";
import {
  ALL_TOPICS,
  describeBadTopic,
  eventTopics,
  isValidTopic,
  MAX_TOPIC_LENGTH,
  parseSelectors,
  parseTopicSelection,
} from "../../src/hub/topic.js";

describe("isValidTopic", () => {
  it("takes 1 to MAX_TOPIC_LENGTH characters, a surrogate pair counting as one", () => {
    expect(MAX_TOPIC_LENGTH).toBe(1_024);
    expect(isValidTopic("a")).toBe(true);
    expect(isValidTopic("t".repeat(1_024))).toBe(true);
    expect(isValidTopic("😀".repeat(1_024))).toBe(true);
    expect(isValidTopic("")).toBe(false);
    expect(isValidTopic("t".repeat(1_025))).toBe(false);
    expect(isValidTopic("😀".repeat(1_025))).toBe(false);
  });

  it("takes what Mercure takes: IRIs, spaces, braces and any Unicode", () => {
    for (const topic of ["https://example.com/books/1?x=1#f", "a b", "orders/{id}", "%zz", "café", "*"])
      expect(isValidTopic(topic), topic).toBe(true);
  });

  it.each(["a\rb", "a\nb", "a\0b", "\r", "\uD800", "a\uDC00", "\uDBFFx"])(
    "refuses CR, LF, NUL and a lone surrogate: %j",
    (bad) => {
      expect(isValidTopic(bad)).toBe(false);
    },
  );
});

describe("describeBadTopic", () => {
  it("quotes the name as JSON, cut to 64 characters and an ellipsis past that", () => {
    expect(describeBadTopic("a\nb")).toBe('"a\\nb"');
    expect(describeBadTopic("x".repeat(64))).toBe(`"${"x".repeat(64)}"`);
    expect(describeBadTopic(`${"x".repeat(64)}yz`)).toBe(`"${"x".repeat(64)}…"`);
  });
});

describe("parseTopicSelection", () => {
  it("gives the default topic when the stream names none", () => {
    expect(parseTopicSelection(undefined)).toEqual(["default"]);
    expect(parseTopicSelection([])).toEqual(["default"]);
  });

  it("takes one value or several, in order, with duplicates collapsed", () => {
    expect(parseTopicSelection("news")).toEqual(["news"]);
    expect(parseTopicSelection(["b", "a", "b", "c", "a"])).toEqual(["b", "a", "c"]);
  });

  it("gives every topic for * anywhere among the values", () => {
    expect(parseTopicSelection("*")).toBe(ALL_TOPICS);
    expect(parseTopicSelection(["a", "*", "b"])).toBe(ALL_TOPICS);
    expect(parseSelectors(["a", "b", "c", "*"], 2)).toBe(ALL_TOPICS);
  });

  it("refuses a bad name with HERALD_INVALID_TOPIC, naming it", () => {
    expect(() => parseTopicSelection(["ok", "bad\nname"])).toThrow(
      expect.objectContaining({
        code: "HERALD_INVALID_TOPIC",
        statusCode: 400,
        message: expect.stringContaining('"bad\\nname"'),
      }),
    );
    expect(() => parseTopicSelection("")).toThrow(expect.objectContaining({ code: "HERALD_INVALID_TOPIC" }));
  });

  it("counts distinct topics against the limit: the limit itself passes, one more is refused", () => {
    expect(parseTopicSelection(["a", "b", "a", "b"], 2)).toEqual(["a", "b"]);
    expect(() => parseTopicSelection(["a", "b", "c"], 2)).toThrow(
      expect.objectContaining({
        code: "HERALD_TOO_MANY_TOPICS",
        statusCode: 400,
        message: expect.stringMatching(/at most 2 topics .* asked for 3/),
      }),
    );
  });
});

describe("eventTopics", () => {
  it("is the canonical topic, then the alternates", () => {
    expect(eventTopics({ topic: "a" })).toEqual(["a"]);
    expect(eventTopics({ topic: "a", alternates: [] })).toEqual(["a"]);
    expect(eventTopics({ topic: "a", alternates: ["b", "c"] })).toEqual(["a", "b", "c"]);
  });
});
