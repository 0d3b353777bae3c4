import type { FastifyInstance } from "fastify";

/** Options for `injectPublish`. */
export interface InjectPublishOptions {
  /** The Content-Type; `undefined` sends none. */
  type?: string | undefined;
  headers?: Record<string, string>;
}

/**
 * `POST /events` through `app.inject`: a string or Buffer body is sent as it is, anything else as
 * JSON. The Content-Type is `application/json` unless `type` says otherwise.
 */
export function injectPublish(app: FastifyInstance, body: unknown, options: InjectPublishOptions = {}) {
  const type = "type" in options ? options.type : "application/json";
  return app.inject({
    method: "POST",
    url: "/events",
    headers: { ...(type !== undefined && { "content-type": type }), ...options.headers },
    payload: typeof body === "string" || Buffer.isBuffer(body) ? body : JSON.stringify(body),
  });
}
