import { type IncomingMessage, STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import { fileURLToPath } from "node:url";
import cors from "@fastify/cors";
import formbody from "@fastify/formbody";
import fastifyStatic from "@fastify/static";
import Fastify, { type FastifyError, type FastifyInstance } from "fastify";
import type { Broker } from "./broker/broker.js";
import { createBroker } from "./broker/create-broker.js";
import type { Config } from "./config.js";
import { BodyTooLargeError, InvalidJsonError, NotFoundError, UnsupportedMediaTypeError } from "./errors.js";
import { Hub } from "./hub/hub.js";
import { eventsRoutes } from "./routes/events.js";
import { healthRoutes } from "./routes/health.js";
import { statsRoutes } from "./routes/stats.js";
import { type TickCounters, ticksRoutes } from "./routes/ticks.js";
import { StreamRegistry } from "./sse/stream-registry.js";

const WEB_ROOT = fileURLToPath(new URL("../web/", import.meta.url));

/** Fastify's own body errors, answered with Herald's codes and messages a curl user can act on. */
function translateError(err: FastifyError, config: Config, contentType: string | undefined): Error {
  switch (err.code) {
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return new UnsupportedMediaTypeError(contentType ?? "(none)", { cause: err });
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new BodyTooLargeError(config.maxBodyBytes, { cause: err });
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return new InvalidJsonError("the body is empty", { cause: err });
    default:
      return err;
  }
}

/** What `buildApp` takes besides the config. */
export interface BuildAppOptions {
  /** The broker to use instead of the one `config` selects; the app closes it on close. */
  broker?: Broker;
}

/**
 * Builds the Herald app for `config`: routes, plugins, broker and hub. Never listens; `main.ts`
 * (or a test) does. Closing the app ends every open stream and closes the broker.
 */
export async function buildApp(config: Config, options: BuildAppOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: { level: config.logLevel },
    bodyLimit: config.maxBodyBytes,
    // Strict types: a JSON "retry": "5000" or true is an error, not a silent coercion.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false } },
  });

  const broker = options.broker ?? (await createBroker(config, app.log));
  const hub = new Hub({
    broker,
    replayLimit: config.historySize,
    maxPendingBytes: config.maxSubscriberBufferBytes,
    log: app.log,
  });
  const streams = new StreamRegistry({
    heartbeatMs: config.heartbeatMs,
    retryMs: config.retryMs,
    maxSubscriberBufferBytes: config.maxSubscriberBufferBytes,
    onTooSlow: (unsentBytes) =>
      app.log.info({ unsentBytes }, "closed a stream whose client is not reading (MAX_SUBSCRIBER_BUFFER_BYTES)"),
  });
  const ticks: TickCounters = { timers: 0 };
  await hub.start();

  // Publishes are JSON or forms; anything else (text/plain included) is a 415.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("application/json", { parseAs: "string" }, (_request, body, done) => {
    if (body === "") return done(new InvalidJsonError("the body is empty"), undefined);
    try {
      done(null, JSON.parse(body as string));
    } catch (err) {
      done(new InvalidJsonError((err as Error).message, { cause: err }), undefined);
    }
  });
  await app.register(formbody);
  await app.register(cors, {
    origin: config.corsOrigin,
    allowedHeaders: ["Content-Type", "Last-Event-ID", "Authorization"],
  });

  app.setErrorHandler((err: FastifyError, request, reply) => {
    const error = translateError(err, config, request.headers["content-type"]) as FastifyError;
    const statusCode = error.statusCode !== undefined && error.statusCode >= 400 ? error.statusCode : 500;
    if (statusCode >= 500) request.log.error({ err }, "request failed");
    // Herald's own errors say what happened; anything else is a bug whose details stay in the log.
    const ours = error.code?.startsWith("HERALD_") === true;
    reply.code(statusCode).send({
      statusCode,
      code: error.code,
      error: STATUS_CODES[statusCode],
      message: ours || statusCode < 500 ? error.message : "Internal Server Error",
    });
  });
  app.setNotFoundHandler((request, reply) => {
    reply.send(new NotFoundError(request.method, request.url.split("?")[0] ?? request.url));
  });

  await app.register(eventsRoutes, { hub, streams });
  await app.register(ticksRoutes, { streams, tickMs: config.tickMs, counters: ticks });
  await app.register(statsRoutes, { hub, streams, ticks });
  await app.register(healthRoutes, { broker });
  await app.register(fastifyStatic, { root: WEB_ROOT });

  // Sockets that never sent a request (browsers and undici open them ahead of time) are not
  // "idle" to Node's server.close(), which would wait for the client to drop them.
  const unused = new Set<Socket>();
  app.server.on("connection", (socket: Socket) => {
    unused.add(socket);
    socket.once("close", () => unused.delete(socket));
  });
  app.server.on("request", (request: IncomingMessage) => unused.delete(request.socket));

  // Open streams would hold the server open forever: end them before it stops listening.
  app.addHook("preClose", async () => {
    streams.endAll();
    for (const socket of unused) socket.destroy();
  });
  app.addHook("onClose", async () => {
    await hub.stop();
    await broker.close();
  });
  return app;
}
