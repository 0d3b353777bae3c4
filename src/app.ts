import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import Fastify, { type FastifyInstance } from "fastify";
import type { Broker } from "./broker/broker.js";
import type { Config } from "./config.js";
import { HeraldLogController, loggerOptions } from "./logger.js";
import { heraldService } from "./plugin.js";

/** What `buildApp` takes besides the config. */
export interface BuildAppOptions {
  /** The broker to use instead of the one `config` selects; the app closes it on close. */
  broker?: Broker;
}

/**
 * Builds the Herald service for `config`: a Fastify server with the Herald plugin at its root and
 * the dashboard. Never listens; `main.ts` (or a test) does. Closing the app ends every open stream
 * and closes the broker.
 */
export async function buildApp(config: Config, options: BuildAppOptions = {}): Promise<FastifyInstance> {
  const { trustProxy } = config;
  const app = Fastify({
    logger: loggerOptions(config),
    logController: new HeraldLogController(),
    trustProxy: typeof trustProxy === "number" ? (_address: string, hop: number) => hop < trustProxy : trustProxy,
  });
  await app.register(heraldService(config, options.broker));

  // Sockets that never sent a request (browsers and undici open them ahead of time) are not
  // "idle" to Node's server.close(), which would wait for the client to drop them.
  const unused = new Set<Socket>();
  app.server.on("connection", (socket: Socket) => {
    unused.add(socket);
    socket.once("close", () => unused.delete(socket));
  });
  app.server.on("request", (request: IncomingMessage) => unused.delete(request.socket));
  app.addHook("preClose", async () => {
    for (const socket of unused) socket.destroy();
  });
  return app;
}
