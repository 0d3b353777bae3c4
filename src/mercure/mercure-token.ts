import type { FastifyRequest } from "fastify";
import { bearerToken, TOKEN_COOKIE } from "../auth/request-token.js";
import { PublishOriginError, TokenInvalidError } from "../errors.js";

/** The cookie Mercure clients (Symfony's `Authorization::setCookie`) set for `EventSource`. */
export const MERCURE_COOKIE = "mercureAuthorization";

/** A token and where it came from: a cookie-borne token publishes only from listed origins. */
export interface FoundToken {
  readonly token: string;
  readonly fromCookie: boolean;
}

/**
 * The token of a request to the Mercure hub, from the first of: `Authorization: Bearer`, the
 * `authorization` query parameter, the `mercureAuthorization` cookie, Herald's `herald_token`
 * cookie. `undefined` when there is none.
 */
export function mercureToken(request: FastifyRequest): FoundToken | undefined {
  const header = bearerToken(request);
  if (header !== undefined) return { token: header, fromCookie: false };
  const query = (request.query as Record<string, string | string[] | undefined>).authorization;
  if (Array.isArray(query)) throw new TokenInvalidError("give the authorization query parameter once");
  if (query) return { token: query, fromCookie: false };
  const cookies = request.headers.cookie;
  if (cookies === undefined) return undefined;
  const parsed = request.server.parseCookie(cookies);
  const cookie = parsed[MERCURE_COOKIE] || parsed[TOKEN_COOKIE];
  return cookie ? { token: cookie, fromCookie: true } : undefined;
}

/** The origin of a browser request: `Origin`, else the scheme and host of `Referer`. */
function requestOrigin(request: FastifyRequest): string | undefined {
  const origin = request.headers.origin;
  if (origin) return origin;
  const referer = request.headers.referer;
  if (!referer) return undefined;
  try {
    return new URL(referer).origin;
  } catch {
    return undefined;
  }
}

/**
 * A cookie is sent by the browser whatever page makes the request, so a cookie-authenticated
 * publish is a cross-site request forgery risk: it is accepted only from `allowed` origins
 * (`PUBLISH_ORIGINS`). Throws `PublishOriginError` otherwise.
 */
export function checkPublishOrigin(request: FastifyRequest, allowed: "*" | readonly string[]): void {
  const origin = requestOrigin(request);
  if (origin === undefined) throw new PublishOriginError("a request without Origin or Referer");
  if (allowed === "*" || allowed.includes(origin)) return;
  throw new PublishOriginError(JSON.stringify(origin));
}
