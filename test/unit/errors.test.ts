import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ERRORS } from "../../src/errors.js";

describe("the error registry", () => {
  // Each constructor takes its own message arguments; any strings will do to read code and status.
  type AnyHeraldError = new (...args: string[]) => { code: string; statusCode?: number };
  const registered = (ERRORS as unknown as readonly AnyHeraldError[]).map((E) => {
    const e = new E("x", "y");
    return { code: e.code, statusCode: e.statusCode };
  });

  it("uses every code once, each with a 4xx status, or 503 when the server cannot take the request now", () => {
    expect(new Set(registered.map((e) => e.code)).size).toBe(registered.length);
    const unavailable = registered
      .filter((e) => e.statusCode === 503)
      .map((e) => e.code)
      .sort();
    expect(unavailable).toEqual([
      "HERALD_BROKER_UNAVAILABLE",
      "HERALD_CONNECTION_LIMIT",
      "HERALD_PUBLISH_OUTCOME_UNKNOWN",
    ]);
    for (const e of registered.filter((e) => e.statusCode !== 503)) {
      expect(e.statusCode, e.code).toBeGreaterThanOrEqual(400);
      expect(e.statusCode, e.code).toBeLessThanOrEqual(499);
    }
  });

  it("matches the README's error table, code for code and status for status", () => {
    const readme = readFileSync("README.md", "utf8");
    const documented = [...readme.matchAll(/^\|\s*`(HERALD_[A-Z_]+)`\s*\|\s*(\d{3})\s*\|/gm)].map((m) => ({
      code: m[1],
      statusCode: Number(m[2]),
    }));
    expect(documented).toEqual(registered);
  });
});
