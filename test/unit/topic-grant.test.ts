import { describe, expect, it } from "vitest";
import { TopicGrant } from "../../src/auth/topic-grant.js";

describe("TopicGrant", () => {
  it.each<[unknown, string[], string[]]>([
    [["news"], ["news"], ["news/1", "new", "sport"]],
    [["*"], ["news", "a/b/c", "x"], []],
    [
      ["orders/{id}"],
      // As Mercure matches: a value may be empty, and holds no reserved character.
      ["orders/42", "orders/a-b_c.d~e", "orders/", "orders/%2F"],
      ["orders/42/items", "orders/a:b", "orders/a@b", "xorders/1"],
    ],
    [["orders/{+rest}"], ["orders/42", "orders/42/items", "orders/a:b@c", "orders/"], ["orders", "other/1"]],
    [
      ["users/{id}/inbox", "news"],
      ["users/7/inbox", "news"],
      ["users/7/outbox", "users/7/8/inbox"],
    ],
    [["a.b"], ["a.b"], ["aXb"]],
    [
      ["{#frag}", "{a,b}", "open{", "{?q}"],
      ["#x/y", "a,b", "open{", "?q=1", ""],
      ["x/y", "a b", "open{x"],
    ],
    [[42, null, { topic: "x" }], [], ["42", "x"]],
    ["news", [], ["news", "n"]],
    [undefined, [], ["news"]],
  ])("%j covers %j and not %j", (entries, covered, notCovered) => {
    const grant = new TopicGrant(entries);
    for (const topic of covered) expect(grant.covers(topic), topic).toBe(true);
    for (const topic of notCovered) expect(grant.covers(topic), topic).toBe(false);
  });

  it("answers a claim of adjacent reserved expressions in one pass (issue 11, defect 8)", () => {
    // A backtracking regexp never finishes this (seconds for four expressions on 256 characters);
    // only the answers are asserted.
    const grant = new TopicGrant(["{+a}{+b}{+c}{+d}{+e}{+f}x"]);
    expect(grant.covers("a".repeat(1_000))).toBe(false);
    expect(grant.covers(`${"a/".repeat(499)}x`)).toBe(true);
  });

  it("flags * as all", () => {
    expect(new TopicGrant(["a", "*"]).all).toBe(true);
    expect(new TopicGrant(["a", "{+x}"]).all).toBe(false);
  });
});
