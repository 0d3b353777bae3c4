import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ERRORS } from "../../src/errors.js";

describe("the error registry", () => {
  const registered = ERRORS.map(({ prototype }) => ({
    code: new (prototype.constructor as new () => typeof prototype)().code,
    statusCode: new (prototype.constructor as new () => typeof prototype)().statusCode,
  }));

  it("uses every code once, each with a 4xx status", () => {
    expect(new Set(registered.map((e) => e.code)).size).toBe(registered.length);
    for (const e of registered) expect(e.statusCode).toBeGreaterThanOrEqual(400);
  });

  it("matches the README's error table, code for code and status for status", () => {
    const readme = readFileSync("README.md", "utf8");
    const documented = [...readme.matchAll(/^\| `(HERALD_[A-Z_]+)` \| (\d{3}) \|/gm)].map((m) => ({
      code: m[1],
      statusCode: Number(m[2]),
    }));
    expect(documented).toEqual(registered);
  });
});
