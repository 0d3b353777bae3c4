/**
 * Pins the Fastify internals `src/sse/end-watched.ts` reads: the route's compiled `onResponse` and
 * `onRequestAbort` hooks. If this fails after a Fastify upgrade, streams would let go of a request
 * whose end a hook waits for (or, the safe way, keep every request): fix end-watched.ts first.
 */
import Fastify, { type FastifyInstance } from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import { isEndWatched } from "../../src/sse/end-watched.js";

let app: FastifyInstance | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

/** What `isEndWatched` says of a request to a route of an app set up by `setUp`. */
async function watched(setUp: (app: FastifyInstance) => void, level = "warn"): Promise<boolean> {
  app = Fastify({ logger: { level } });
  setUp(app);
  let answer: boolean | undefined;
  app.get("/s", async (_request, reply) => {
    answer = isEndWatched(reply);
    return "";
  });
  await app.inject("/s");
  return answer as boolean;
}

describe("isEndWatched (Fastify's route context)", () => {
  it("is false for a route without onResponse or onRequestAbort hooks, whatever other hooks it has", async () => {
    expect(await watched((a) => a.addHook("onRequest", async () => {}))).toBe(false);
  });

  it("is true for a route with an onResponse hook, inherited or its own", async () => {
    expect(await watched((a) => a.addHook("onResponse", async () => {}))).toBe(true);
    app = Fastify();
    let answer: boolean | undefined;
    app.get("/s", { onResponse: async () => {} }, async (_request, reply) => {
      answer = isEndWatched(reply);
      return "";
    });
    await app.inject("/s");
    expect(answer).toBe(true);
  });

  it("is true for a route with an onRequestAbort hook", async () => {
    expect(await watched((a) => a.addHook("onRequestAbort", async (_request) => {}))).toBe(true);
  });

  it("is true at log level debug, where each request gets its line when it ends", async () => {
    expect(await watched(() => {}, "debug")).toBe(true);
  });
});
