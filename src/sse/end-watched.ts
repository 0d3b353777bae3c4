/**
 * FASTIFY INTERNALS LIVE HERE, AND ONLY HERE.
 *
 * A stream may let Fastify's request and reply go once it is open (see `Http1Writer.release`) only
 * if nothing waits for its response to end. Fastify has no public way to ask which hooks a route
 * has, so this reads the route's compiled hooks where Fastify keeps them for each request: under
 * the symbol described `fastify.context` (`kRouteContext` in Fastify's lib/symbols.js), as
 * `onResponse` and `onRequestAbort`, each `null` when the route has none. If that ever changes,
 * the lookup finds nothing and every stream keeps its request, as before.
 * `test/unit/end-watched.test.ts` pins it, and fails loudly if a Fastify release changes it.
 */
import type { FastifyReply, FastifyRequest } from "fastify";

interface RouteHooks {
  onResponse?: unknown;
  onRequestAbort?: unknown;
}

let contextSymbol: symbol | undefined;

function routeHooks(request: FastifyRequest): RouteHooks | undefined {
  contextSymbol ??= Object.getOwnPropertySymbols(request).find((s) => s.description === "fastify.context");
  if (contextSymbol === undefined) return undefined;
  const context = (request as unknown as Record<symbol, unknown>)[contextSymbol];
  return typeof context === "object" && context !== null ? (context as RouteHooks) : undefined;
}

/**
 * Whether something besides the stream waits for this response to end: an `onResponse` or
 * `onRequestAbort` hook on the route (Fastify runs them with the request and reply when the
 * response ends), a per-request log line at the end (Herald writes one at `debug` and below), or
 * a Fastify that keeps its hooks somewhere else than expected.
 */
export function isEndWatched(reply: FastifyReply): boolean {
  const level = reply.log.level;
  if (level === "debug" || level === "trace") return true;
  const hooks = routeHooks(reply.request);
  if (hooks === undefined || !("onResponse" in hooks) || !("onRequestAbort" in hooks)) return true;
  return hooks.onResponse !== null || hooks.onRequestAbort !== null;
}
