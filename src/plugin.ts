import { STATUS_CODES } from "node:http";
import { fileURLToPath } from "node:url";
import cookie from "@fastify/cookie";
import cors from "@fastify/cors";
import formbody from "@fastify/formbody";
import helmet from "@fastify/helmet";
import rateLimit from "@fastify/rate-limit";
import fastifyStatic from "@fastify/static";
import { Ajv } from "ajv";
import type {
  FastifyError,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  FastifySchemaValidationError,
} from "fastify";
import fp from "fastify-plugin";
import { JwtVerifier, parseJwtKey } from "./auth/jwt-verifier.js";
import { TokenExpiry } from "./auth/token-expiry.js";
import type { Broker, EventInput } from "./broker/broker.js";
import { createBroker } from "./broker/create-broker.js";
import { type BrokerKind, type Config, ConfigError, DEFAULT_CONFIG, loadConfig } from "./config.js";
import {
  BodyTooLargeError,
  InvalidJsonError,
  itemError,
  NotFoundError,
  PrivateUnavailableError,
  UnsupportedMediaTypeError,
} from "./errors.js";
import { Hub } from "./hub/hub.js";
import { MERCURE_PATH, type MercureSubscriptionInfo, mercureRoutes } from "./mercure/mercure-routes.js";
import { mercureToken } from "./mercure/mercure-token.js";
import { createPresence, newestEventId } from "./mercure/presence.js";
import { subscriptionsRoutes } from "./mercure/subscriptions-routes.js";
import { openapiRoutes } from "./openapi.js";
import {
  batchSizeError,
  bodyError,
  eventSchema,
  eventsRoutes,
  type PublishAnswer,
  type PublishBody,
  publishAnswer,
  toEventInputs,
} from "./routes/events.js";
import { healthRoutes } from "./routes/health.js";
import { metricsRoutes } from "./routes/metrics.js";
import { createStatsReader, type Stats, statsRoutes } from "./routes/stats.js";
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

/** Settings that belong to the server, not to a plugin inside someone's app. */
const SERVER_SETTINGS = [
  "port",
  "host",
  "listenBacklog",
  "logLevel",
  "logFormat",
  "trustProxy",
  "tlsCertFile",
  "tlsKeyFile",
] as const;
type ServerSetting = (typeof SERVER_SETTINGS)[number];

/** The settings a plugin takes: every environment setting but the server's, in camelCase. */
export type HeraldSettings = Omit<Config, ServerSetting | "broker">;

/**
 * Options of the Herald plugin: each setting of the service, named as its environment variable in
 * camelCase (`historySize` for `HISTORY_SIZE`), validated with the same rules and messages.
 */
export interface HeraldOptions extends Partial<Omit<HeraldSettings, "corsOrigin">> {
  /** `"memory"`, `"sqlite"`, `"redis"`, or a `Broker` of your own (Herald closes it on close). Default `"memory"`. */
  broker?: BrokerKind | Broker;
  /** `"*"`, one origin, or a list of origins allowed to call Herald's routes from a browser. */
  corsOrigin?: "*" | string | string[];
  /** Where Herald's routes live, e.g. `"/live"`. Default: the root of where it is registered. */
  prefix?: string;
  /** The name of the in-process API on the Fastify instance. Default `"herald"`. */
  decorator?: string;
  /** Serve the dashboard at the prefix's root. Default `false` (the service turns it on). */
  dashboard?: boolean;
  /**
   * Serve the Mercure hub at the origin's `/.well-known/mercure` (a path that cannot move, so it
   * ignores `prefix`). Default `false` (the service turns it on).
   */
  mercure?: boolean;
}

/** Herald's in-process API, decorated on the Fastify instance (`app.herald` by default). */
export interface HeraldApi {
  /**
   * Publishes one event, or several in order, as `POST /events` would (same validation, same
   * answer, subscribers of every node get them), without a token. A list is validated as a
   * whole first: any invalid item throws an error naming its index and nothing is published.
   */
  publish(input: PublishBody): Promise<PublishAnswer>;
  publish(input: readonly PublishBody[]): Promise<PublishAnswer[]>;
  /** The `/stats` figures as they are now. */
  stats(): Stats;
  /** Ends every stream and closes the broker; also done by the app's `close`. Idempotent. */
  close(): Promise<void>;
}

declare module "fastify" {
  interface FastifyInstance {
    /** Herald's in-process API, when Herald is registered with the default decorator name. */
    herald: HeraldApi;
  }
}

/** What `setUpHerald` takes besides validated settings. */
interface HeraldSetup {
  broker: Broker | undefined;
  prefix: string;
  decorator: string;
  dashboard: boolean;
  mercure: boolean;
  /** Told of each Mercure subscription as it starts, besides presence (tests). */
  onMercureSubscribe?: MercureOnSubscribe;
}

type MercureOnSubscribe = (info: MercureSubscriptionInfo) => (() => void) | undefined;

const PLUGIN_OPTIONS = new Set(["broker", "prefix", "decorator", "dashboard", "mercure"]);

/** An item of a list option as its variable spells it: `redisSentinels` items `{ host, port }` as `host:port`. */
function listItem(item: unknown): string {
  if (typeof item === "object" && item !== null && "host" in item && "port" in item) return `${item.host}:${item.port}`;
  return String(item);
}

function envName(option: string): string {
  return option.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
}

/**
 * Plugin options → settings, through `loadConfig`, so each option has exactly the rules of its
 * environment variable; errors name the option and the variable.
 */
function resolveOptions(options: HeraldOptions): { config: Config; setup: HeraldSetup } {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(options)) {
    if (value === undefined || PLUGIN_OPTIONS.has(name)) continue;
    if (!(name in DEFAULT_CONFIG) || (SERVER_SETTINGS as readonly string[]).includes(name)) {
      throw new ConfigError(`herald: unknown option ${JSON.stringify(name)}`);
    }
    env[envName(name)] = Array.isArray(value) ? value.map(listItem).join(",") : String(value);
  }
  const broker = options.broker;
  if (typeof broker === "string") env.BROKER = broker;
  let config: Config;
  try {
    config = loadConfig(env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    const variable = /^[A-Z_]+/.exec(err.message)?.[0] ?? "";
    const option = Object.keys(options).find((name) => envName(name) === variable);
    throw new ConfigError(`herald: ${option === undefined ? err.message : `option ${option} (${err.message})`}`, {
      cause: err,
    });
  }
  return {
    config,
    setup: {
      broker: typeof broker === "object" ? broker : undefined,
      prefix: options.prefix ?? "",
      decorator: options.decorator ?? "herald",
      dashboard: options.dashboard ?? false,
      mercure: options.mercure ?? false,
    },
  };
}

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

/** Strict types: a JSON `"retry": "5000"` or `true` is an error, not a silent coercion. */
function strictAjv(): Ajv {
  return new Ajv({ coerceTypes: false, removeAdditional: false, useDefaults: true, allErrors: false, strict: false });
}

/**
 * Sets Herald up on `host`: broker, hub and streams, the in-process API as a decorator, and the
 * routes in their own encapsulated context under `setup.prefix`, so that Herald's parsers, error
 * handler and 404 handler apply to its routes only. Closing `host` ends every stream at once and
 * closes the broker.
 */
async function setUpHerald(host: FastifyInstance, config: Config, setup: HeraldSetup): Promise<void> {
  const log = host.log;
  const broker = setup.broker ?? (await createBroker(config, log));
  const hub = new Hub({
    broker,
    replayLimit: config.historySize,
    maxPendingBytes: config.maxSubscriberBufferBytes,
    maxEventBytes: config.maxEventBytes,
    replayDrainTimeoutMs: config.replayDrainTimeoutMs,
    log,
  });
  const streams = new StreamRegistry({
    heartbeatMs: config.heartbeatMs,
    retryMs: config.retryMs,
    retryJitterMs: config.retryJitterMs,
    maxSubscriberBufferBytes: config.maxSubscriberBufferBytes,
    maxConnections: config.maxConnections,
    maxConnectionsPerIp: config.maxConnectionsPerIp,
    onTooSlow: (unsentBytes) =>
      log.info({ unsentBytes }, "closed a stream whose client is not reading (MAX_SUBSCRIBER_BUFFER_BYTES)"),
  });
  const ticks: TickCounters = { timers: 0 };
  const expiry = new TokenExpiry();
  const publisher = verifier(config.publisherJwtKey, "PUBLISHER_JWT_KEY", "publish");
  const subscriber = verifier(config.subscriberJwtKey, "SUBSCRIBER_JWT_KEY", "subscribe");
  if (publisher === undefined) log.warn("PUBLISHER_JWT_KEY is not set: anyone who can reach Herald may publish");
  if (subscriber === undefined) log.warn("SUBSCRIBER_JWT_KEY is not set: private events are refused");
  await hub.start();
  const presence = config.subscriptions
    ? await createPresence(config, { publish: (input) => hub.publish(input), log })
    : undefined;

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      streams.endAll();
      // After the streams end, so each subscription's leave is announced before the broker goes.
      await presence?.close();
      expiry.stop();
      await hub.stop();
      await broker.close();
    })();
    return closing;
  };
  const validateBody = strictAjv().compile(eventSchema);
  const validate = (body: unknown, at?: number): PublishBody => {
    if (validateBody(body)) return body as PublishBody;
    const err = bodyError((validateBody.errors ?? []) as FastifySchemaValidationError[]);
    if (at === undefined) throw err;
    throw itemError(err, at);
  };
  const checkPrivate = (input: EventInput) => {
    if (input.private && subscriber === undefined) throw new PrivateUnavailableError();
  };
  const api = {
    async publish(input: PublishBody | readonly PublishBody[]) {
      if (!Array.isArray(input)) {
        const [one] = toEventInputs([validate(input)], false, checkPrivate);
        const { event, duplicate } = await hub.publish(one as EventInput);
        return publishAnswer(event, duplicate);
      }
      if (input.length === 0 || input.length > config.maxBatchEvents) throw batchSizeError(config.maxBatchEvents);
      const bodies = input.map((body, i) => validate(body, i));
      const results = await hub.publishBatch(toEventInputs(bodies, true, checkPrivate));
      return results.map(({ event, duplicate }) => publishAnswer(event, duplicate));
    },
    stats: createStatsReader({ hub, streams, ticks }),
    close,
  } as HeraldApi;
  host.decorate(setup.decorator, api);

  /** The CORS options of the Mercure routes, over Herald's own (see `mercure`). */
  const mercureCors = {
    credentials: config.corsOrigin !== "*",
    allowedHeaders: ["authorization", "cache-control", "last-event-id"],
  };
  /** What every context of Herald's routes has: its validator, body limit, parsers, CORS, error and 404 handlers. */
  const prepare = async (app: FastifyInstance) => {
    app.setValidatorCompiler(({ schema }) => strictAjv().compile(schema));
    // Every body route of Herald's has Herald's limit, whatever the host's bodyLimit is.
    app.addHook("onRoute", (route) => {
      route.bodyLimit ??= config.maxBodyBytes;
    });
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
    // Options fixed once: the Mercure routes set theirs in their route config (see `mercure`).
    await app.register(cors, {
      origin: config.corsOrigin,
      allowedHeaders: ["Content-Type", "Last-Event-ID", "Authorization"],
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
        // A publish with an unknown outcome names the id its retry must carry.
        ...(typeof (error as { publishId?: unknown }).publishId === "string" && {
          id: (error as { publishId?: string }).publishId,
        }),
        // A batch's: the ids of its items, in order.
        ...(Array.isArray((error as { publishIds?: unknown }).publishIds) && {
          ids: (error as { publishIds?: string[] }).publishIds,
        }),
      });
    });
    app.setNotFoundHandler((request, reply) => {
      // Mercure's paths allow credentials (see `mercure`) on what is not found there too, so that a
      // browser sending them can read the 404. The CORS hook has run with Herald's own options.
      if (
        mercureCors.credentials &&
        request.url.startsWith(MERCURE_PATH) &&
        reply.hasHeader("access-control-allow-origin")
      ) {
        reply.header("access-control-allow-credentials", "true");
      }
      reply.send(new NotFoundError(request.method, request.url.split("?")[0] ?? request.url));
    });
  };
  /**
   * The Mercure hub's routes, over the same hub, streams, tokens and limits as the native API, with
   * the CORS headers the Mercure hub sends: with listed origins, credentials too (an EventSource
   * withCredentials sends the mercureAuthorization cookie), never with *, which browsers refuse
   * with credentials. @fastify/cors merges a route's `config.cors` over its options. Registered as
   * a plugin of its own, so that its `onRoute` hook sets only its routes' config.
   */
  const mercure = async (app: FastifyInstance) => {
    app.addHook("onRoute", (route) => {
      // Fastify's route config type does not know @fastify/cors's `cors` key.
      route.config = { ...route.config, cors: mercureCors } as typeof route.config;
    });
    // The CORS hook answers a preflight with the route's headers; this route only gives it one to match.
    const preflight = { schema: { hide: true } };
    const notFound = (_request: FastifyRequest, reply: FastifyReply) => reply.callNotFound();
    app.options(MERCURE_PATH, preflight, notFound);
    app.options(`${MERCURE_PATH}/*`, preflight, notFound);
    await app.register(mercureRoutes, {
      hub,
      streams,
      publisher,
      subscriber,
      expiry,
      anonymousSubscribers: config.anonymousSubscribers,
      publishOrigins: config.publishOrigins,
      publishRateLimit: config.publishRateLimit,
      onSubscribe: (info: MercureSubscriptionInfo) => {
        const leave = presence?.join({
          subscriber: info.subscriberId,
          topics: info.selectors,
          payload: info.payload,
        });
        const end = setup.onMercureSubscribe?.(info);
        return () => {
          leave?.();
          end?.();
        };
      },
    });
    // Config guarantees a subscriber key whenever SUBSCRIPTIONS=true.
    if (presence !== undefined && subscriber !== undefined) {
      await app.register(subscriptionsRoutes, {
        presence,
        subscriber,
        lastEventId: newestEventId(broker),
        token: (request) => mercureToken(request)?.token,
      });
    }
  };

  await host.register(
    async (app) => {
      await prepare(app);
      // Before the routes: swagger collects them as they are added.
      await openapiRoutes(app, setup.prefix);
      // Before the routes: it times the publish route as it is added.
      await app.register(metricsRoutes, { hub, streams, ticks, subscriber });
      await app.register(eventsRoutes, {
        hub,
        streams,
        publisher,
        subscriber,
        expiry,
        maxTopicsPerStream: config.maxTopicsPerStream,
        publishRateLimit: config.publishRateLimit,
        anonymousSubscribers: config.anonymousSubscribers,
        maxBatchEvents: config.maxBatchEvents,
      });
      if (setup.mercure && setup.prefix === "") await app.register(mercure);
      await app.register(ticksRoutes, { streams, tickMs: config.tickMs, counters: ticks });
      await app.register(statsRoutes, { hub, streams, ticks, subscriber });
      await app.register(statsStreamRoutes, { hub, streams, ticks, subscriber, expiry, retryMs: config.retryMs });
      await app.register(healthRoutes, { broker });
      if (setup.dashboard) {
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
      }
    },
    { prefix: setup.prefix },
  );
  // Under a prefix, the hub still lives at the origin's /.well-known/mercure, in a context of its own.
  if (setup.mercure && setup.prefix !== "") {
    await host.register(async (app) => {
      await prepare(app);
      await app.register(mercure);
    });
  }

  // Open streams would hold the server open forever: end them before it stops listening.
  host.addHook("preClose", async () => streams.endAll());
  host.addHook("onClose", close);
}

/**
 * Herald as a Fastify plugin: `await app.register(herald, { prefix: "/live", historySize: 1000 })`
 * gives `app` Herald's routes under the prefix and `app.herald`, the in-process API. Options are
 * the service's settings in camelCase (see `HeraldOptions`); the server's own settings (port, host,
 * log level, trusted proxies) stay the host app's. Register it once per prefix and decorator name;
 * two instances share nothing.
 */
export const herald = fp<HeraldOptions>(
  async (host, options) => {
    const { config, setup } = resolveOptions(options);
    await setUpHerald(host, config, setup);
  },
  { fastify: "5.x" },
);

/**
 * Herald for the service: already-validated settings, at the root, with the dashboard. `buildApp`
 * registers it; it skips option parsing so tests can build apps from a `Config` directly.
 */
export function heraldService(
  config: Config,
  options: { broker?: Broker; onMercureSubscribe?: MercureOnSubscribe } = {},
) {
  const setup = { broker: options.broker, prefix: "", decorator: "herald", dashboard: true, mercure: true };
  return fp(async (host) => setUpHerald(host, config, { ...setup, onMercureSubscribe: options.onMercureSubscribe }), {
    fastify: "5.x",
  });
}
