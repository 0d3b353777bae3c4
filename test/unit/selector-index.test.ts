import { describe, expect, it } from "vitest";
import { SelectorIndex, selects } from "../../src/hub/selector-index.js";

interface Sub {
  name: string;
  visited: number;
}
const sub = (name: string): Sub => ({ name, visited: 0 });

/** The names `forEachMatch` visits for `topics`, in visiting order, and the count it returns. */
function visit(index: SelectorIndex<Sub>, topics: string[]) {
  const names: string[] = [];
  const n = index.forEachMatch(topics, (s) => names.push(s.name));
  return { names, n };
}

describe("SelectorIndex", () => {
  it("finds the subscribers of an exact topic, of *, and of each matching template", () => {
    const index = new SelectorIndex<Sub>();
    index.add(sub("exact"), ["books/1"]);
    index.add(sub("any"), "*");
    index.add(sub("template"), ["books/{id}"]);
    index.add(sub("other"), ["films/{id}", "books"]);
    expect(visit(index, ["books/1"])).toEqual({ names: ["exact", "any", "template"], n: 3 });
    expect(visit(index, ["books/2"])).toEqual({ names: ["any", "template"], n: 2 });
    expect(visit(index, ["films/9"])).toEqual({ names: ["any", "other"], n: 2 });
    expect(visit(index, ["music"])).toEqual({ names: ["any"], n: 1 });
  });

  it("visits a subscriber once per event, however many of its selectors and the event's topics match", () => {
    const index = new SelectorIndex<Sub>();
    const a = sub("a");
    index.add(a, ["x", "y", "{t}", "{+t}"]);
    index.add(sub("b"), ["y"]);
    expect(visit(index, ["x", "y", "z"])).toEqual({ names: ["a", "b"], n: 2 });
    // The next event visits it again: the stamp is per event.
    expect(visit(index, ["x"])).toEqual({ names: ["a"], n: 1 });
    expect(visit(index, ["q/r"])).toEqual({ names: ["a"], n: 1 });
  });

  it("matches a template against an alternate topic as well as the canonical one", () => {
    const index = new SelectorIndex<Sub>();
    index.add(sub("t"), ["books/{id}"]);
    index.add(sub("e"), ["alt"]);
    expect(visit(index, ["canonical", "books/7"])).toEqual({ names: ["t"], n: 1 });
    expect(visit(index, ["canonical", "alt"])).toEqual({ names: ["e"], n: 1 });
  });

  it("keeps each distinct template once, and drops it and its topics with their last subscriber", () => {
    const index = new SelectorIndex<Sub>();
    expect(index.empty).toBe(true);
    const a = sub("a");
    const b = sub("b");
    const c = sub("c");
    index.add(a, ["books/{id}", "news"]);
    index.add(b, ["books/{id}", "news"]);
    index.add(c, "*");
    expect(index.templateCount).toBe(1);
    expect(index.counts()).toEqual({ "books/{id}": 2, news: 2, "*": 1 });
    expect(index.empty).toBe(false);

    index.remove(a, ["books/{id}", "news"]);
    expect(index.templateCount).toBe(1);
    expect(index.counts()).toEqual({ "books/{id}": 1, news: 1, "*": 1 });
    index.remove(b, ["books/{id}", "news"]);
    expect(index.templateCount).toBe(0);
    expect(index.counts()).toEqual({ "*": 1 });
    expect(index.empty).toBe(false);
    index.remove(c, "*");
    expect(index.counts()).toEqual({});
    expect(index.empty).toBe(true);
    expect(visit(index, ["books/1", "news"])).toEqual({ names: [], n: 0 });
  });

  it("is not empty while only an exact topic, only *, or only a template has a subscriber", () => {
    for (const selection of [["news"], "*", ["n/{id}"]] as const) {
      const index = new SelectorIndex<Sub>();
      const s = sub("s");
      index.add(s, selection);
      expect(index.empty, String(selection)).toBe(false);
      index.remove(s, selection);
      expect(index.empty, String(selection)).toBe(true);
    }
  });

  it("leaves other subscribers alone when removing one that was never added, or from another topic", () => {
    const index = new SelectorIndex<Sub>();
    const a = sub("a");
    index.add(a, ["news", "n/{id}"]);
    index.remove(sub("stranger"), ["news", "n/{id}"]);
    index.remove(a, ["sport"]);
    expect(index.counts()).toEqual({ news: 1, "n/{id}": 1 });
  });

  it("counts a topic named __proto__ like any other", () => {
    const index = new SelectorIndex<Sub>();
    index.add(sub("p"), ["__proto__"]);
    expect(Object.keys(index.counts())).toEqual(["__proto__"]);
    expect(Object.getOwnPropertyDescriptor(index.counts(), "__proto__")?.value).toBe(1);
  });

  it("lists every subscription once, whatever it selects", () => {
    const index = new SelectorIndex<Sub>();
    const a = sub("a");
    const b = sub("b");
    const c = sub("c");
    index.add(a, ["x", "y/{id}"]);
    index.add(b, "*");
    index.add(c, ["y/{id}"]);
    expect([...index.all()].map((s) => s.name).sort()).toEqual(["a", "b", "c"]);
  });
});

describe("selects", () => {
  it("applies the index's rule to one selection: *, exact topics, templates, any of the event's topics", () => {
    expect(selects("*", ["anything"])).toBe(true);
    expect(selects(["a", "b"], ["b"])).toBe(true);
    expect(selects(["a", "b"], ["c"])).toBe(false);
    expect(selects(["books/{id}"], ["books/1"])).toBe(true);
    expect(selects(["books/{id}"], ["books/1/2"])).toBe(false);
    expect(selects(["x", "books/{id}"], ["canonical", "books/1"])).toBe(true);
    expect(selects([], ["a"])).toBe(false);
  });
});
