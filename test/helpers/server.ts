import { readFileSync } from "node:fs";
import type { FastifyInstance } from "fastify";
import pino from "pino";
import { type Dispatcher, request } from "undici";
import { type BuildAppOptions, buildApp } from "../../src/app.js";
import { type Config, DEFAULT_CONFIG } from "../../src/config.js";
import type { Stats } from "../../src/routes/stats.js";
import { tlsAgent } from "./tls.js";

export interface TestServer {
  app: FastifyInstance;
  /** `http://127.0.0.1:<port>`, or `https://` when `tlsCertFile` is set. */
  url: string;
  /** Over TLS, an undici dispatcher that trusts the server's certificate and speaks HTTP/2; else undefined (the global one). */
  dispatcher: Dispatcher | undefined;
  /** Publishes with undici; returns the parsed 201 body. */
  publish(body: Record<string, unknown>): Promise<{ id: string; topic: string; duplicate?: boolean }>;
  /** `GET /stats`; `headers` carry a token when `SUBSCRIBER_JWT_KEY` is set. */
  stats(headers?: Record<string, string>): Promise<Stats>;
  close(): Promise<void>;
}

export type { Stats } from "../../src/routes/stats.js";

/** A logger that drops everything, for parts built outside an app. */
export const silentLogger = pino({ level: "silent" });

/** Builds Herald with `overrides` and listens on 127.0.0.1, port 0. */
export async function startServer(
  overrides: Partial<Config> = {},
  port = 0,
  options: BuildAppOptions = {},
): Promise<TestServer> {
  // Tests read the retry line as RETRY_MS exactly; retry-jitter.test.ts turns the jitter back on.
  const config = { ...DEFAULT_CONFIG, logLevel: "silent", retryJitterMs: 0, ...overrides, host: "127.0.0.1", port };
  const app = await buildApp(config as Config, options);
  await app.listen({ host: "127.0.0.1", port });
  const address = app.server.address();
  if (address === null || typeof address === "string") throw new Error("no TCP address");
  const secure = overrides.tlsCertFile !== undefined;
  const url = `${secure ? "https" : "http"}://127.0.0.1:${address.port}`;
  const dispatcher = secure ? tlsAgent(readFileSync(overrides.tlsCertFile as string)) : undefined;
  return {
    app,
    url,
    dispatcher,
    async publish(body) {
      const res = await request(`${url}/events`, {
        dispatcher,
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      const json = (await res.body.json()) as { id: string; topic: string; message?: string };
      if (res.statusCode !== 201) throw new Error(`publish answered ${res.statusCode}: ${json.message}`);
      return json;
    },
    async stats(headers = {}) {
      const res = await request(`${url}/stats`, { headers, dispatcher });
      return (await res.body.json()) as Stats;
    },
    async close() {
      await app.close();
      await dispatcher?.destroy();
    },
  };
}
