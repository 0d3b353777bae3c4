import { describe, expect, it } from "vitest";
import { compileSelector, TopicSelector } from "../../src/hub/topic-selector.js";

describe("compileSelector's cache", () => {
  it("keeps 10,000 compiled selectors, then drops the oldest: subscribers choose selectors, so it is bounded", () => {
    const first = compileSelector("cache-bound/{first}");
    for (let i = 0; i < 9_999; i++) compileSelector(`cache-bound/${i}/{id}`);
    expect(compileSelector("cache-bound/{first}")).toBe(first);
    // The cache may hold selectors of other tests: enough new ones push the first out whatever they are.
    for (let i = 0; i < 10_000; i++) compileSelector(`cache-bound/more/${i}/{id}`);
    const again = compileSelector("cache-bound/{first}");
    expect(again).not.toBe(first);
    expect(again.matches("cache-bound/x")).toBe(true);
  });
});

/**
 * Which selectors are URI templates (and so select more than themselves): RFC 6570 §2.1–2.2 as
 * Mercure reads it. A selector that is not well-formed selects only itself, so getting this wrong
 * silently changes what a subscriber receives.
 */

/** RFC 6570 §2.1, in its own words: literals are any character except CTL, SP, DQUOTE, "'", "%" (aside from pct-encoded), "<", ">", "\", "^", "`", "{", "|", "}". */
function isRfcLiteral(c: string): boolean {
  const code = c.charCodeAt(0);
  return code > 0x20 && code < 0x7f && !`"'%<>\\^\`{|}`.includes(c);
}

describe("TopicSelector, template syntax", () => {
  it("takes every RFC 6570 literal character in a template's literal part, and no other ASCII", () => {
    for (let code = 0; code < 0x80; code++) {
      const c = String.fromCharCode(code);
      if (c === "{") continue;
      const selector = new TopicSelector(`a${c}/{id}`);
      expect(selector.template, JSON.stringify(c)).toBe(isRfcLiteral(c));
      expect(selector.matches(`a${c}/42`), JSON.stringify(c)).toBe(isRfcLiteral(c));
      // Not a template: it selects only itself.
      expect(selector.matches(`a${c}/{id}`)).toBe(true);
    }
  });

  it.each<[string, boolean]>([
    ["\u009f", false],
    ["\u00a0", true],
    ["é", true],
    ["\ufdcf", true],
    ["\ufdd0", false],
    ["\ufdef", false],
    ["\ufdf0", true],
    ["\ufffe", false],
    ["\uffff", false],
    ["😀", true],
    ["\ud800", false],
    ["\ud800x", false],
    ["\udbff\udfff", true],
    ["\ud800\udc00", true],
    ["\ud800\ue000", false],
    ["\udc00", false],
    ["\udfff", false],
  ])("takes %j in a literal only if it is a Unicode character RFC 6570 allows: %s", (literal, allowed) => {
    const selector = new TopicSelector(`${literal}/{id}`);
    expect(selector.template).toBe(allowed);
    expect(selector.matches(`${literal}/7`)).toBe(allowed);
  });

  it("takes %XX triplets in literals, and nothing else after %", () => {
    expect(new TopicSelector("a%20b/{id}").matches("a%20b/1")).toBe(true);
    expect(new TopicSelector("a%aF/{id}").matches("a%aF/1")).toBe(true);
    for (const bad of ["a%2/{id}", "a%/{id}", "a%zz/{id}", "a%2G/{id}", "a%G2/{id}", "{id}%", "{id}%4"]) {
      const selector = new TopicSelector(bad);
      expect(selector.template, bad).toBe(false);
      expect(selector.matches(bad.replace("{id}", "1")), bad).toBe(false);
    }
  });

  it.each(["{=x}", "{,x}", "{!x}", "{@x}", "{|x}", "{x y}", "{-x}", "{x:0}", "{x:10000}", "{x*y}", "a{x}}"])(
    "treats %j (an operator RFC 6570 reserves, or a bad varspec) as an exact topic",
    (source) => {
      const selector = new TopicSelector(source);
      expect(selector.template).toBe(false);
      expect(selector.matches(source)).toBe(true);
      expect(selector.matches("x")).toBe(false);
    },
  );

  it("takes prefixes, explodes and empty variable names as the Go library does", () => {
    expect(new TopicSelector("{x:3}").matches("abcdef")).toBe(true);
    expect(new TopicSelector("{x:10}").template).toBe(true);
    expect(new TopicSelector("{x:9999}").template).toBe(true);
    expect(new TopicSelector("{%4}").template).toBe(false);
    expect(new TopicSelector("{%41b}").matches("v")).toBe(true);
    expect(new TopicSelector("a/{}").matches("a/v")).toBe(true);
  });

  it("lets only an exploded variable's value hold =, and only after its operator", () => {
    // The first variable explodes: its value may hold "=".
    expect(new TopicSelector("{x*,y}").matches("a=b")).toBe(true);
    // Only the second does: the first value may not, the later ones may.
    expect(new TopicSelector("{x,y*}").matches("a=b")).toBe(false);
    expect(new TopicSelector("{x,y*}").matches("a,b=c")).toBe(true);
    expect(new TopicSelector("{x,y}").matches("a,b=c")).toBe(false);
    // Named operators allow "=" in every value.
    expect(new TopicSelector("{;x,y}").matches(";a=1;b=2")).toBe(true);
    expect(new TopicSelector("{.x,y}").matches(".a=1")).toBe(false);
  });

  it("matches each operator's values: upper case and digits everywhere, reserved characters only for + and #", () => {
    expect(new TopicSelector("{x}").matches("AZaz09-._~")).toBe(true);
    expect(new TopicSelector("{x}").matches("%AF%af")).toBe(true);
    expect(new TopicSelector("{+x}").matches("A/Z:0")).toBe(true);
    expect(new TopicSelector("{&x}").matches("&a=1")).toBe(true);
    expect(new TopicSelector("{&x,y}").matches("&a=1&b=2")).toBe(true);
    expect(new TopicSelector("{&x}").matches("a=1")).toBe(false);
    expect(new TopicSelector("{&x}").matches("?a=1")).toBe(false);
    expect(new TopicSelector("{&x}").matches("&a/b")).toBe(false);
    expect(new TopicSelector("{;x}").matches(";a/b")).toBe(false);
    expect(new TopicSelector("{?x}").matches("?a:b")).toBe(false);
  });

  it("checks the literal text around the expressions, including when they would overlap", () => {
    const selector = new TopicSelector("ab{x}ba");
    expect(selector.matches("abba")).toBe(true);
    expect(selector.matches("ab1ba")).toBe(true);
    expect(selector.matches("aba")).toBe(false);
    expect(selector.matches("ab")).toBe(false);
    expect(selector.matches("xb1ba")).toBe(false);
    expect(selector.matches("ab1bx")).toBe(false);
    // Literals between expressions are matched by the automaton.
    const middle = new TopicSelector("{x}-{y}");
    expect(middle.matches("1-2")).toBe(true);
    expect(middle.matches("12")).toBe(false);
  });

  it("matches no non-ASCII character inside a value, only its %XX form", () => {
    expect(new TopicSelector("a/{x}").matches("a/é")).toBe(false);
    expect(new TopicSelector("a/{+x}").matches("a/é")).toBe(false);
    expect(new TopicSelector("a/{x}").matches("a/%C3%A9")).toBe(true);
    // Code 128 (just past ASCII) is not a value character either.
    expect(new TopicSelector("a/{+x}").matches("a/\u0080")).toBe(false);
  });

  it("gives a selector that has no expression no template, whatever its braces", () => {
    for (const source of ["news", "a{", "a}", "{", "}"]) {
      const selector = compileSelector(source);
      expect(selector.template, source).toBe(false);
      expect(selector.matches(source), source).toBe(true);
    }
  });
});
