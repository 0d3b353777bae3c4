import { type IncomingMessage, STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import { fileURLToPath } from "node:url";
import cookie from "@fastify/cookie";
import cors from "@fastify/cors";
import formbody from "@fastify/formbody";
import helmet from "@fastify/helmet";
import rateLimit from "@fastify/rate-limit";
import fastifyStatic from "@fastify/static";
import Fastify, { type FastifyError, type FastifyInstance } from "fastify";
import { JwtVerifier, parseJwtKey } from "./auth/jwt-verifier.js";
import { logRequest } from "./auth/request-token.js";
import { TokenExpiry } from "./auth/token-expiry.js";
import type { Broker } from "./broker/broker.js";
import { createBroker } from "./broker/create-broker.js";
import type { Config } from "./config.js";
import { BodyTooLargeError, InvalidJsonError, NotFoundError, UnsupportedMediaTypeError } from "./errors.js";
import { Hub } from "./hub/hub.js";
import { MERCURE_PATH, type MercureRoutesOptions, mercureRoutes } from "./mercure/mercure-routes.js";
import { eventsRoutes } from "./routes/events.js";
import { healthRoutes } from "./routes/health.js";
import { metricsRoutes } from "./routes/metrics.js";
import { statsRoutes } from "./routes/stats.js";
import { statsStreamRoutes } from "./routes/stats-stream.js";
import { type TickCounters, ticksRoutes } from "./routes/ticks.js";
import { StreamRegistry } from "./sse/stream-registry.js";

const WEB_ROOT = fileURLToPath(new URL("../web/", import.meta.url));

/** The dashboard runs only its own files: no inline script or style, nothing from elsewhere. */
const DASHBOARD_HELMET = {
  contentSecurityPolicy: {
    useDefaults: false,
    directives: {
      defaultSrc: ["'self'"],
      scriptSrc: ["'self'"],
      styleSrc: ["'self'"],
      imgSrc: ["'self'", "data:"],
      objectSrc: ["'none'"],
      baseUri: ["'self'"],
      formAction: ["'self'"],
      frameAncestors: ["'self'"],
    },
  },
  // HSTS belongs to whatever terminates TLS in front of Herald; over plain HTTP it means nothing.
  strictTransportSecurity: false,
};

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

function verifier(key: string | undefined, keyName: string, role: "publish" | "subscribe") {
  return key === undefined ? undefined : new JwtVerifier(parseJwtKey(key), { keyName, role });
}

/** What `buildApp` takes besides the config. */
export interface BuildAppOptions {
  /** The broker to use instead of the one `config` selects; the app closes it on close. */
  broker?: Broker;
  /** Told of each Mercure subscription as it starts (see `MercureRoutesOptions.onSubscribe`). */
  onMercureSubscribe?: MercureRoutesOptions["onSubscribe"];
}

/**
 * Builds the Herald app for `config`: routes, plugins, broker and hub. Never listens; `main.ts`
 * (or a test) does. Closing the app ends every open stream and closes the broker.
 */
export async function buildApp(config: Config, options: BuildAppOptions = {}): Promise<FastifyInstance> {
  const { trustProxy } = config;
  const app = Fastify({
    logger: { level: config.logLevel, serializers: { req: logRequest } },
    trustProxy: typeof trustProxy === "number" ? (_address: string, hop: number) => hop < trustProxy : trustProxy,
    bodyLimit: config.maxBodyBytes,
    // Strict types: a JSON "retry": "5000" or true is an error, not a silent coercion.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false } },
  });

  const broker = options.broker ?? (await createBroker(config, app.log));
  const hub = new Hub({
    broker,
    replayLimit: config.historySize,
    maxPendingBytes: config.maxSubscriberBufferBytes,
    maxEventBytes: config.maxEventBytes,
    log: app.log,
  });
  const streams = new StreamRegistry({
    heartbeatMs: config.heartbeatMs,
    retryMs: config.retryMs,
    maxSubscriberBufferBytes: config.maxSubscriberBufferBytes,
    maxConnections: config.maxConnections,
    maxConnectionsPerIp: config.maxConnectionsPerIp,
    onTooSlow: (unsentBytes) =>
      app.log.info({ unsentBytes }, "closed a stream whose client is not reading (MAX_SUBSCRIBER_BUFFER_BYTES)"),
  });
  const ticks: TickCounters = { timers: 0 };
  const expiry = new TokenExpiry();
  const publisher = verifier(config.publisherJwtKey, "PUBLISHER_JWT_KEY", "publish");
  const subscriber = verifier(config.subscriberJwtKey, "SUBSCRIBER_JWT_KEY", "subscribe");
  if (publisher === undefined) app.log.warn("PUBLISHER_JWT_KEY is not set: anyone who can reach Herald may publish");
  if (subscriber === undefined) app.log.warn("SUBSCRIBER_JWT_KEY is not set: private events are refused");
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
  const nativeCors = { origin: config.corsOrigin, allowedHeaders: ["Content-Type", "Last-Event-ID", "Authorization"] };
  // As the Mercure hub sends it; with listed origins, credentials too (an EventSource withCredentials
  // sends the mercureAuthorization cookie), never with *, which browsers refuse with credentials.
  const mercureCors = {
    origin: config.corsOrigin,
    credentials: config.corsOrigin !== "*",
    allowedHeaders: ["authorization", "cache-control", "last-event-id"],
  };
  await app.register(cors, () => (request: { url?: string }, callback: (error: null, options: object) => void) => {
    callback(null, request.url?.startsWith(MERCURE_PATH) ? mercureCors : nativeCors);
  });
  // Cookies are read only where a token may come from one, not parsed on every request.
  await app.register(cookie, { hook: false });
  await app.register(rateLimit, { global: false });

  app.setErrorHandler((err: FastifyError, request, reply) => {
    const error = translateError(err, config, request.headers["content-type"]) as FastifyError;
    const statusCode = error.statusCode !== undefined && error.statusCode >= 400 ? error.statusCode : 500;
    // A Herald 503 (a full server) is an answer, not a failure: its message stays.
    const failed = statusCode >= 500 && !error.code?.startsWith("HERALD_");
    if (failed) request.log.error({ err }, "request failed");
    if (statusCode === 401) reply.header("www-authenticate", 'Bearer realm="herald"');
    reply.code(statusCode).send({
      statusCode,
      code: error.code,
      error: STATUS_CODES[statusCode],
      message: failed ? "Internal Server Error" : error.message,
    });
  });
  app.setNotFoundHandler((request, reply) => {
    reply.send(new NotFoundError(request.method, request.url.split("?")[0] ?? request.url));
  });

  await app.register(eventsRoutes, {
    hub,
    streams,
    publisher,
    subscriber,
    expiry,
    maxTopicsPerStream: config.maxTopicsPerStream,
    publishRateLimit: config.publishRateLimit,
    anonymousSubscribers: config.anonymousSubscribers,
  });
  await app.register(mercureRoutes, {
    hub,
    streams,
    publisher,
    subscriber,
    expiry,
    anonymousSubscribers: config.anonymousSubscribers,
    publishOrigins: config.publishOrigins,
    publishRateLimit: config.publishRateLimit,
    ...(options.onMercureSubscribe !== undefined && { onSubscribe: options.onMercureSubscribe }),
  });
  await app.register(ticksRoutes, { streams, tickMs: config.tickMs, counters: ticks });
  await app.register(statsRoutes, { hub, streams, ticks, subscriber });
  await app.register(statsStreamRoutes, { hub, streams, ticks, subscriber, expiry, retryMs: config.retryMs });
  await app.register(metricsRoutes, { hub, streams, ticks, subscriber });
  await app.register(healthRoutes, { broker });
  // Helmet builds its headers on each request: scoped to the dashboard, it costs publishes and streams nothing.
  await app.register(async (web) => {
    await web.register(helmet, DASHBOARD_HELMET);
    // No build step, so file names never change: browsers revalidate (ETag → 304) rather than run stale code.
    await web.register(fastifyStatic, {
      root: WEB_ROOT,
      cacheControl: false,
      setHeaders: (res) => res.setHeader("cache-control", "no-cache"),
    });
  });

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
    expiry.stop();
    await hub.stop();
    await broker.close();
  });
  return app;
}
