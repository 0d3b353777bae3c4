import { Validator } from "@seriousme/openapi-schema-validator";
import type { FastifyInstance } from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import { buildApp } from "../../src/app.js";
import { DEFAULT_CONFIG } from "../../src/config.js";
import { ERRORS } from "../../src/errors.js";

let app: FastifyInstance;
afterEach(() => app?.close());

/** Every method + path the app answers (CORS preflights and HEAD aside), read from Fastify's route tree. */
async function appRoutes(): Promise<string[]> {
  app = await buildApp({ ...DEFAULT_CONFIG, logLevel: "silent" });
  await app.ready();
  const routes: string[] = [];
  const stack: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split("\n")) {
    // "│   └── /stream (GET)": four characters of indent per level, then the segment and its methods.
    const match = /^((?:[│ ] {3})*)[├└]── (\S+)(?: \(([^)]*)\))?/.exec(line);
    if (match === null) continue;
    const depth = (match[1] ?? "").length / 4;
    stack.length = depth;
    stack.push(match[2] ?? "");
    for (const method of (match[3] ?? "").split(", ")) {
      if (method === "" || method === "OPTIONS" || method === "HEAD") continue;
      routes.push(`${method} ${stack.join("")}`);
    }
  }
  return routes;
}

describe("GET /openapi.json", () => {
  it("is a valid OpenAPI 3.1 document", async () => {
    app = await buildApp({ ...DEFAULT_CONFIG, logLevel: "silent" });
    const res = await app.inject({ method: "GET", url: "/openapi.json" });
    expect(res.statusCode).toBe(200);
    const document = res.json();
    expect(document.openapi).toBe("3.1.0");
    const result = await new Validator().validate(document);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
  });

  it("has exactly the app's routes, each with a summary and its answers", async () => {
    const routes = await appRoutes();
    const document = (await app.inject({ method: "GET", url: "/openapi.json" })).json();
    const documented = Object.entries(document.paths as Record<string, Record<string, unknown>>).flatMap(
      ([path, operations]) => Object.keys(operations).map((method) => `${method.toUpperCase()} ${path}`),
    );
    expect(documented.sort()).toEqual([...new Set(routes)].sort());
    type Operation = { summary?: unknown; responses?: Record<string, unknown> };
    for (const [path, operations] of Object.entries(document.paths as Record<string, Record<string, Operation>>)) {
      for (const [method, operation] of Object.entries(operations)) {
        expect(operation.summary, `${method} ${path}`).toEqual(expect.any(String));
        expect(Object.keys(operation.responses ?? {}).length, `${method} ${path}`).toBeGreaterThan(0);
      }
    }
  });

  it("names every error code Herald has, and describes the publish body from the route's own schema", async () => {
    // Every route on: the subscriptions API too.
    const key = "a-test-secret-that-is-32-bytes-long!";
    app = await buildApp({ ...DEFAULT_CONFIG, logLevel: "silent", subscriberJwtKey: key, subscriptions: true });
    const text = (await app.inject({ method: "GET", url: "/openapi.json" })).body;
    type AnyHeraldError = new (...args: string[]) => { code: string };
    for (const error of ERRORS as unknown as AnyHeraldError[]) expect(text).toContain(new error("x", "y").code);
    const document = JSON.parse(text);
    // One event, or a batch of them.
    const [one, batch] = document.paths["/events"].post.requestBody.content["application/json"].schema.anyOf;
    expect(Object.keys(one.properties).sort()).toEqual(["data", "event", "id", "private", "retry", "topic"]);
    expect(batch).toMatchObject({ type: "array", minItems: 1, maxItems: 1_000, items: one });
    expect(document.paths["/events"].get.parameters.map((p: { name: string }) => p.name)).toContain("lastEventId");
  });
});
