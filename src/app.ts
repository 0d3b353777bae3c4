import Fastify, { type FastifyInstance } from "fastify";
import type { Broker } from "./broker/broker.js";
import type { Config } from "./config.js";
import { trackIdleConnections } from "./connections.js";
import { HeraldLogController, loggerOptions } from "./logger.js";
import type { MercureRoutesOptions } from "./mercure/mercure-routes.js";
import { heraldService } from "./plugin.js";
import { readTlsFiles, tlsServerOptions } from "./tls.js";

/** What `buildApp` takes besides the config. */
export interface BuildAppOptions {
  /** The broker to use instead of the one `config` selects; the app closes it on close. */
  broker?: Broker;
  /** Told of each Mercure subscription as it starts (see `MercureRoutesOptions.onSubscribe`). */
  onMercureSubscribe?: MercureRoutesOptions["onSubscribe"];
}

/**
 * Builds the Herald service for `config`: a Fastify server with the Herald plugin at its root and
 * the dashboard. Never listens; `main.ts` (or a test) does. Closing the app ends every open stream
 * and closes the broker.
 */
export async function buildApp(config: Config, options: BuildAppOptions = {}): Promise<FastifyInstance> {
  const { trustProxy } = config;
  const app = Fastify({
    ...tlsServerOptions(readTlsFiles(config)),
    logger: loggerOptions(config),
    logController: new HeraldLogController(),
    trustProxy: typeof trustProxy === "number" ? (_address: string, hop: number) => hop < trustProxy : trustProxy,
  });
  await app.register(heraldService(config, options));

  // After Herald's own preClose, which ends every stream: then idle sockets and HTTP/2 sessions can go.
  const closeIdleConnections = trackIdleConnections(app.server);
  app.addHook("preClose", async () => closeIdleConnections());
  return app;
}
