import type { FastifyRequest } from "fastify";
import { TokenInvalidError } from "../errors.js";
import { singleQueryValue } from "../query-value.js";

/** The cookie a browser page sets for `EventSource`, which cannot send headers. */
export const TOKEN_COOKIE = "herald_token";

/** The token in `Authorization: Bearer <token>`, `undefined` without the header; any other scheme is refused. */
export function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (header === undefined) return undefined;
  const match = /^Bearer +(\S+) *$/i.exec(header);
  if (match?.[1] === undefined) throw new TokenInvalidError("the Authorization header must be Bearer <JWT>");
  return match[1];
}

/**
 * A subscriber's token, from the first of: the `Authorization: Bearer` header, the
 * `authorization` query parameter (for clients that cannot set headers), the `herald_token`
 * cookie (for browsers). `undefined` when there is none.
 */
export function subscriberToken(request: FastifyRequest<{ Querystring: { authorization?: string | string[] } }>) {
  const header = bearerToken(request);
  if (header !== undefined) return header;
  const query = singleQueryValue("authorization", request.query.authorization);
  if (query) return query;
  const cookie = request.headers.cookie;
  return cookie === undefined ? undefined : request.server.parseCookie(cookie)[TOKEN_COOKIE] || undefined;
}

const QUERY_TOKEN = /([?&]authorization=)[^&#]*/gi;

/**
 * Fastify's request log line, with the `authorization` query parameter blanked: a token in a URL
 * must not end up in logs.
 */
export function logRequest(request: FastifyRequest) {
  return {
    method: request.method,
    url: request.url.replace(QUERY_TOKEN, "$1[redacted]"),
    host: request.host,
    remoteAddress: request.ip,
    remotePort: request.socket?.remotePort,
  };
}
