import { describe, expect, it } from "vitest";
import { compileSelector, isTemplate, TopicSelector } from "../../src/hub/topic-selector.js";

describe("TopicSelector", () => {
  it.each<[string, string[], string[]]>([
    ["*", ["a", "https://x/y?z#f", "{x}"], []],
    ["news", ["news"], ["news/1", "new"]],
    [
      "https://example.net/foo/{id}",
      [
        "https://example.net/foo/42",
        "https://example.net/foo/",
        "https://example.net/foo/a,b",
        "https://example.net/foo/%C3%A9",
      ],
      [
        "https://example.net/foo/1/2",
        "https://example.net/bar/1",
        "https://example.net/foo/a:b",
        "https://example.net/foo/%zz",
      ],
    ],
    [
      "orders/{+rest}",
      ["orders/42", "orders/42/items", "orders/a:b@c?d=e#f", "orders/"],
      ["orders", "other/1", "orders/a b"],
    ],
    ["a{/b}", ["a", "a/x"], ["a/x/y", "ax"]],
    ["a{/b*}", ["a", "a/x", "a/x/y/z"], [`a/${"x/".repeat(3)} `]],
    ["a{/b,c}", ["a", "a/x", "a/x/y"], ["a/x/y/z"]],
    ["a{?q,r}", ["a", "a?q=1", "a?q=1&r=2"], ["a?q=1&r=2&s=3", "a&q=1"]],
    ["a{#f}", ["a", "a#x/y?z"], ["ab"]],
    ["a{.ext}", ["a", "a.json", "a.json.gz"], ["a.json/gz", "a,json"]],
    ["x{}y", ["xy", "x1y"], ["x/y"]],
    ["open{", ["open{"], ["open", "open{x"]],
    ["{a b}", ["{a b}"], ["x"]],
    ["bad{=x}", ["bad{=x}"], ["badx"]],
    ["caf\u00e9/{id}", ["caf\u00e9/1"], ["cafe/1"]],
  ])("%s matches %j and not %j", (source, matching, other) => {
    const selector = new TopicSelector(source);
    for (const topic of matching) expect(selector.matches(topic), topic).toBe(true);
    for (const topic of other) expect(selector.matches(topic), topic).toBe(false);
  });

  it("tells templates from exact topics", () => {
    expect(isTemplate("a/{id}")).toBe(true);
    expect(isTemplate("a/{")).toBe(false);
    expect(isTemplate("a/b")).toBe(false);
    expect(isTemplate("*")).toBe(false);
  });

  it("compiles each distinct selector once", () => {
    expect(compileSelector("c/{id}")).toBe(compileSelector("c/{id}"));
  });

  it("answers adjacent reserved expressions without backtracking (issue 11, defect 8)", () => {
    // With a backtracking regexp this costs seconds; here it is one pass. Only the answer is asserted.
    const selector = new TopicSelector("{+a}{+b}{+c}{+d}{+e}{+f}x");
    expect(selector.matches("a".repeat(1024))).toBe(false);
    expect(selector.matches(`${"a/".repeat(500)}x`)).toBe(true);
  });

  /**
   * The same language written as a regular expression (the construction the Go library uses),
   * compared on every short topic over a small alphabet. Short inputs keep the regexp fast.
   */
  it("agrees with the regular expression of each template on every short topic", () => {
    const u = "[,A-Za-z0-9._~-]|%[0-9A-Fa-f]{2}";
    const un = "[,=A-Za-z0-9._~-]|%[0-9A-Fa-f]{2}";
    const ur = "[A-Za-z0-9._~:/?#\\[\\]@!$&'()*+,;=-]|%[0-9A-Fa-f]{2}";
    const cases: [string, string][] = [
      ["a/{x}", `^a/(?:(?:${u})*)?$`],
      ["a/{+x}", `^a/(?:(?:${ur})*)?$`],
      ["{/x,y}", `^(?:/(?:${u})*(?:/(?:${u})*){0,1})?$`],
      ["{?x*}", `^(?:\\?(?:${un})*(?:&(?:${un})*)*)?$`],
      ["{x}/{+y}", `^(?:(?:${u})*)?/(?:(?:${ur})*)?$`],
      ["{;x}{#y}", `^(?:;(?:${un})*)?(?:#(?:${ur})*)?$`],
    ];
    const alphabet = ["a", "/", ",", "=", "?", "%", "4", "#", " "];
    const topics = [""];
    for (let length = 1; length <= 4; length++) {
      for (const prefix of topics.filter((t) => t.length === length - 1)) {
        for (const c of alphabet) topics.push(prefix + c);
      }
    }
    for (const [template, pattern] of cases) {
      const selector = new TopicSelector(template);
      const reference = new RegExp(pattern);
      for (const topic of topics)
        expect(selector.matches(topic), `${template} ${topic}`).toBe(reference.test(topic) || topic === template);
    }
  });
});
