import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { goJson, queryEscape, queryUnescape, subscriptionId, subscriptionUpdate } from "../../src/mercure/presence.js";

describe("subscription ids", () => {
  it("escape the selector and the subscriber as Go's url.QueryEscape does (the example of Mercure's spec)", () => {
    expect(subscriptionId("https://example.com/{selector}", "urn:uuid:bb3de268-05b0-4c65-b44e-8f9acefc29d6")).toBe(
      "/.well-known/mercure/subscriptions/https%3A%2F%2Fexample.com%2F%7Bselector%7D/urn%3Auuid%3Abb3de268-05b0-4c65-b44e-8f9acefc29d6",
    );
  });

  it("keep only A-Z a-z 0-9 - _ . ~, write a space as +, and escape UTF-8 bytes in upper-case hex", () => {
    expect(queryEscape("a-b_c.d~e")).toBe("a-b_c.d~e");
    expect(queryEscape("a b+c")).toBe("a+b%2Bc");
    expect(queryEscape("!'()*?#%&=")).toBe("%21%27%28%29%2A%3F%23%25%26%3D");
    expect(queryEscape("café ☕")).toBe("caf%C3%A9+%E2%98%95");
  });

  it("come back unchanged through queryUnescape, whatever the text", () => {
    fc.assert(fc.property(fc.string({ unit: "grapheme" }), (text) => queryUnescape(queryEscape(text)) === text));
  });
});

describe("subscription updates", () => {
  it("are private, on the subscription's id, with the document as data", () => {
    const update = subscriptionUpdate({ subscriber: "urn:uuid:1", topics: ["news"], payload: { a: 1 } }, "news", false);
    expect(update).toEqual({
      topic: "/.well-known/mercure/subscriptions/news/urn%3Auuid%3A1",
      private: true,
      data: goJson({
        "@context": "https://mercure.rocks/",
        id: "/.well-known/mercure/subscriptions/news/urn%3Auuid%3A1",
        type: "Subscription",
        subscriber: "urn:uuid:1",
        topic: "news",
        active: false,
        payload: { a: 1 },
      }),
    });
  });

  it("leave out a null payload, as v0.24.2 does", () => {
    const update = subscriptionUpdate({ subscriber: "s", topics: ["t"], payload: null }, "t", true);
    expect(JSON.parse(update.data)).not.toHaveProperty("payload");
  });
});
