import { isIP } from "node:net";
import { parseJwtKey } from "./auth/jwt-verifier.js";

/** Every Herald setting, typed. `loadConfig` is the only place that reads environment variables. */
export interface Config {
  port: number;
  host: string;
  /** Connections the kernel queues before Herald accepts them (capped by the kernel's somaxconn). */
  listenBacklog: number;
  heartbeatMs: number;
  retryMs: number;
  /**
   * Each stream announces `retryMs` plus a random delay up to this, so the clients of a node that
   * dies do not all come back in the same instant; `undefined`: half of `retryMs`.
   */
  retryJitterMs: number | undefined;
  historySize: number;
  tickMs: number;
  /** `*`, or the exact origins allowed to call Herald from a browser. */
  corsOrigin: "*" | string[];
  /** The largest publish body, one event or a batch. */
  maxBodyBytes: number;
  /** The most events one `POST /events` batch may hold. */
  maxBatchEvents: number;
  maxSubscriberBufferBytes: number;
  /** The most bytes one event may take on the wire, encoded; at most a quarter of `maxSubscriberBufferBytes`. */
  maxEventBytes: number;
  /** A Last-Event-ID replay whose client takes no batch for this long is closed; it resumes by id. */
  replayDrainTimeoutMs: number;
  logLevel: LogLevel;
  /** Where history lives: this process (`memory`), a SQLite file (`sqlite`), or Redis, shared by a cluster (`redis`). */
  broker: BrokerKind;
  /** Events older than this leave history; 0 keeps them until `historySize` pushes them out. */
  historyTtlS: number;
  databasePath: string;
  redisUrl: string;
  /** Prefix of every Redis key, so several Herald clusters (or test runs) can share one Redis. */
  redisPrefix: string;
  /** Redis Sentinels (`host:port` each) that name the primary; empty to use `redisUrl` directly. */
  redisSentinels: { host: string; port: number }[];
  /** The primary's name in the Sentinels' `sentinel monitor` line; set when `redisSentinels` is. */
  redisMasterName: string | undefined;
  /** A publish is acknowledged only once this many replicas hold it (Redis `WAIT`); 0 does not wait. */
  redisWaitReplicas: number;
  /** How long a publish waits for `redisWaitReplicas` replicas before answering 503. */
  redisWaitTimeoutMs: number;
  /** Verifies publishers' tokens; unset, anyone may publish. */
  publisherJwtKey: string | undefined;
  /** Verifies subscribers' tokens; unset, nobody may publish private events. */
  subscriberJwtKey: string | undefined;
  /** Open streams, all clients together; 0 for no limit. */
  maxConnections: number;
  /** Open streams from one client address; 0 for no limit. */
  maxConnectionsPerIp: number;
  /** Publishes per minute from one client (token subject, else address); 0 for no limit. */
  publishRateLimit: number;
  maxTopicsPerStream: number;
  /**
   * Fastify's `trustProxy`: whose `X-Forwarded-For` gives the client address. `false`, a hop count,
   * or proxy addresses/CIDRs; never `true`, which would trust what the client itself writes.
   */
  trustProxy: false | number | string;
  /** Log lines as JSON (for a log pipeline) or pretty (for people); `auto` is pretty when stdout is a terminal. */
  logFormat: LogFormat;
  /** PEM certificate (chain) file: set with `tlsKeyFile`, Herald serves HTTPS with HTTP/2 and HTTP/1.1. */
  tlsCertFile: string | undefined;
  /** PEM private key file of `tlsCertFile`. */
  tlsKeyFile: string | undefined;
  /** Mercure's subscriptions API and subscription updates (presence); needs `subscriberJwtKey`. */
  subscriptions: boolean;
  /** False: every stream (native and Mercure) needs a valid subscriber token. */
  anonymousSubscribers: boolean;
  /** Origins whose pages may publish with the `mercureAuthorization` cookie (`*` for any); empty refuses cookie publishing. */
  publishOrigins: "*" | string[];
}

const BROKER_KINDS = ["memory", "sqlite", "redis"] as const;
/** The storage engines Herald can run on. */
export type BrokerKind = (typeof BROKER_KINDS)[number];

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
type LogLevel = (typeof LOG_LEVELS)[number];

const LOG_FORMATS = ["auto", "pretty", "json"] as const;
/** How log lines are written: `auto` picks `pretty` on a terminal and `json` otherwise. */
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Defaults, as documented in `.env.example` and the README. */
export const DEFAULT_CONFIG: Readonly<Config> = {
  port: 3000,
  host: "127.0.0.1",
  listenBacklog: 4_096,
  heartbeatMs: 15_000,
  retryMs: 3_000,
  retryJitterMs: undefined,
  historySize: 10_000,
  tickMs: 1_000,
  corsOrigin: "*",
  maxBodyBytes: 1_048_576,
  maxBatchEvents: 1_000,
  maxSubscriberBufferBytes: 1_048_576,
  maxEventBytes: 262_144,
  replayDrainTimeoutMs: 10_000,
  logLevel: "info",
  broker: "memory",
  historyTtlS: 0,
  databasePath: "./data/herald.db",
  redisUrl: "redis://127.0.0.1:6379",
  redisPrefix: "herald",
  redisSentinels: [],
  redisMasterName: undefined,
  redisWaitReplicas: 0,
  redisWaitTimeoutMs: 1_000,
  publisherJwtKey: undefined,
  subscriberJwtKey: undefined,
  maxConnections: 10_000,
  maxConnectionsPerIp: 100,
  publishRateLimit: 60_000,
  maxTopicsPerStream: 100,
  trustProxy: false,
  logFormat: "auto",
  tlsCertFile: undefined,
  tlsKeyFile: undefined,
  subscriptions: false,
  anonymousSubscribers: true,
  publishOrigins: [],
};

/**
 * Longest a shutdown may take before the process exits anyway (`main.ts`). A successor that finds
 * the SQLite file still locked waits this long, and a little more, for its predecessor to go.
 */
export const SHUTDOWN_GRACE_MS = 5_000;

/** Thrown at start-up for a bad setting; the message names the variable and what it accepts. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

type Env = Readonly<Record<string, string | undefined>>;

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === "") return fallback;
  const value = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name}=${JSON.stringify(raw)} is invalid: use a whole number from ${min} to ${max}`);
  }
  return value;
}

/** Like `integer`, but unset (or empty) stays `undefined`, for a default derived from another setting. */
function optionalInteger(env: Env, name: string, min: number, max: number): number | undefined {
  const raw = env[name]?.trim();
  return raw === undefined || raw === "" ? undefined : integer(env, name, 0, min, max);
}

function corsOrigin(env: Env): Config["corsOrigin"] {
  const raw = env.CORS_ORIGIN?.trim();
  if (raw === undefined || raw === "" || raw === "*") return "*";
  const origins = raw.split(",").map((o) => o.trim());
  for (const origin of origins) {
    if (!/^https?:\/\/[^/\s]+$/.test(origin)) {
      throw new ConfigError(
        `CORS_ORIGIN=${JSON.stringify(raw)} is invalid: use * or a comma-separated list of origins like https://app.example.com`,
      );
    }
  }
  return origins;
}

function bool(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === "") return fallback;
  if (raw !== "true" && raw !== "false") {
    throw new ConfigError(`${name}=${JSON.stringify(raw)} is invalid: use true or false`);
  }
  return raw === "true";
}

function publishOrigins(env: Env): Config["publishOrigins"] {
  const raw = env.PUBLISH_ORIGINS?.trim();
  if (raw === undefined || raw === "") return [];
  if (raw === "*") return "*";
  const origins = raw.split(",").map((o) => o.trim());
  for (const origin of origins) {
    if (!/^https?:\/\/[^/\s]+$/.test(origin)) {
      throw new ConfigError(
        `PUBLISH_ORIGINS=${JSON.stringify(raw)} is invalid: use * or a comma-separated list of origins like https://app.example.com`,
      );
    }
  }
  return origins;
}

function oneOf<T extends string>(env: Env, name: string, choices: readonly T[], fallback: T): T {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === "") return fallback;
  if (!(choices as readonly string[]).includes(raw)) {
    throw new ConfigError(`${name}=${JSON.stringify(raw)} is invalid: use one of ${choices.join(", ")}`);
  }
  return raw as T;
}

function redisUrl(env: Env): string {
  const raw = env.REDIS_URL?.trim();
  if (raw === undefined || raw === "") return DEFAULT_CONFIG.redisUrl;
  if (!/^rediss?:\/\/[^\s]+$/.test(raw)) {
    throw new ConfigError(`REDIS_URL=${JSON.stringify(raw)} is invalid: use redis://host:port (or rediss:// for TLS)`);
  }
  return raw;
}

function redisPrefix(env: Env): string {
  const raw = env.REDIS_PREFIX?.trim();
  if (raw === undefined || raw === "") return DEFAULT_CONFIG.redisPrefix;
  if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(raw)) {
    throw new ConfigError(
      `REDIS_PREFIX=${JSON.stringify(raw)} is invalid: use 1 to 64 characters from A-Z a-z 0-9 _ . : -`,
    );
  }
  return raw;
}

function redisSentinels(env: Env): Config["redisSentinels"] {
  const raw = env.REDIS_SENTINELS?.trim();
  if (raw === undefined || raw === "") return [];
  return raw.split(",").map((entry) => {
    const match = /^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(\d{1,5})$/.exec(entry.trim());
    const port = Number(match?.[2]);
    if (match === null || port < 1 || port > 65_535) {
      throw new ConfigError(
        `REDIS_SENTINELS=${JSON.stringify(raw)} is invalid: use a comma-separated list of host:port, such as 10.0.0.1:26379,10.0.0.2:26379`,
      );
    }
    return { host: (match[1] as string).replace(/^\[(.*)\]$/, "$1"), port };
  });
}

function redisMasterName(env: Env, sentinels: Config["redisSentinels"]): string | undefined {
  const raw = env.REDIS_MASTER_NAME?.trim() || undefined;
  if (sentinels.length === 0) {
    if (raw !== undefined)
      throw new ConfigError("REDIS_MASTER_NAME is set but REDIS_SENTINELS is not: set both, or neither");
    return undefined;
  }
  if (raw === undefined) {
    throw new ConfigError(
      "REDIS_SENTINELS is set but REDIS_MASTER_NAME is not: set it to the name in the Sentinels' `sentinel monitor <name> …` line",
    );
  }
  if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(raw)) {
    throw new ConfigError(
      `REDIS_MASTER_NAME=${JSON.stringify(raw)} is invalid: use 1 to 64 characters from A-Z a-z 0-9 _ . : -`,
    );
  }
  if (env.REDIS_URL?.trim()) {
    throw new ConfigError(
      "REDIS_URL and REDIS_SENTINELS are both set: use REDIS_URL for a single Redis, or REDIS_SENTINELS with REDIS_MASTER_NAME, not both",
    );
  }
  return raw;
}

function host(env: Env): string {
  const raw = env.HOST?.trim();
  if (raw === undefined || raw === "") return DEFAULT_CONFIG.host;
  if (
    isIP(raw) === 0 &&
    !/^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(raw)
  ) {
    throw new ConfigError(
      `HOST=${JSON.stringify(raw)} is invalid: use an IP address (127.0.0.1, or 0.0.0.0 for every interface) or a host name`,
    );
  }
  return raw;
}

function jwtKey(env: Env, name: string): string | undefined {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === "") return undefined;
  try {
    parseJwtKey(raw);
  } catch (err) {
    throw new ConfigError(
      `${name} is invalid: ${(err as Error).message}. Use an HS256 secret of 32 bytes or more, or a PEM public key`,
    );
  }
  return raw;
}

function trustProxy(env: Env): Config["trustProxy"] {
  const raw = env.TRUST_PROXY?.trim();
  if (raw === undefined || raw === "" || raw === "false") return false;
  if (raw === "true") {
    // Trusting every hop takes the left-most X-Forwarded-For entry, which the client writes itself:
    // it could spend another address's MAX_CONNECTIONS_PER_IP or dodge its own.
    throw new ConfigError(
      'TRUST_PROXY="true" is invalid: it would let any client choose its own address with X-Forwarded-For: use the number of proxies in front of Herald (1 behind one nginx) or their addresses/CIDRs (127.0.0.1)',
    );
  }
  if (/^\d{1,2}$/.test(raw)) return Number(raw);
  const valid = raw.split(",").every((entry) => {
    const [address, bits, ...rest] = entry.trim().split("/");
    return rest.length === 0 && isIP(address ?? "") !== 0 && (bits === undefined || /^\d{1,3}$/.test(bits));
  });
  if (!valid) {
    throw new ConfigError(
      `TRUST_PROXY=${JSON.stringify(raw)} is invalid: use false, a number of proxy hops, or a comma-separated list of proxy addresses or CIDRs`,
    );
  }
  return raw;
}

/**
 * A subscriber is dropped once it leaves `MAX_SUBSCRIBER_BUFFER_BYTES` unread: if a few events
 * could fill that, a short burst of large events would drop every subscriber that paused.
 */
function checkEventFitsBuffer(config: Config): Config {
  if (config.maxEventBytes * 4 > config.maxSubscriberBufferBytes) {
    throw new ConfigError(
      `MAX_EVENT_BYTES=${config.maxEventBytes} is invalid with MAX_SUBSCRIBER_BUFFER_BYTES=${config.maxSubscriberBufferBytes}: a subscriber must be able to hold at least 4 of the largest events, so raise MAX_SUBSCRIBER_BUFFER_BYTES to ${config.maxEventBytes * 4} or more, or lower MAX_EVENT_BYTES`,
    );
  }
  return config;
}

/**
 * `TLS_CERT_FILE` and `TLS_KEY_FILE`, both or neither. Only the paths are checked here: whether
 * they can be read and hold a matching pair is checked when the server starts (`src/tls.ts`).
 */
function tlsFiles(env: Env): Pick<Config, "tlsCertFile" | "tlsKeyFile"> {
  const cert = env.TLS_CERT_FILE?.trim() || undefined;
  const key = env.TLS_KEY_FILE?.trim() || undefined;
  if ((cert === undefined) !== (key === undefined)) {
    const [set, unset] = cert === undefined ? ["TLS_KEY_FILE", "TLS_CERT_FILE"] : ["TLS_CERT_FILE", "TLS_KEY_FILE"];
    throw new ConfigError(
      `${set} is set but ${unset} is not: set both (PEM files of the certificate and its private key) to serve HTTPS, or neither for plain HTTP`,
    );
  }
  return { tlsCertFile: cert, tlsKeyFile: key };
}

function subscriptions(env: Env, subscriberJwtKey: string | undefined): boolean {
  const on = oneOf(env, "SUBSCRIPTIONS", ["true", "false"], "false") === "true";
  if (on && subscriberJwtKey === undefined) {
    // Subscription updates are private and the list shows tokens' payloads: only tokens may read them.
    throw new ConfigError(
      "SUBSCRIPTIONS=true needs SUBSCRIBER_JWT_KEY: subscription updates are private and the subscriptions API is read with a subscriber token. Set SUBSCRIBER_JWT_KEY, or SUBSCRIPTIONS=false",
    );
  }
  return on;
}

function redisTopology(env: Env): Pick<Config, "redisSentinels" | "redisMasterName"> {
  const sentinels = redisSentinels(env);
  return { redisSentinels: sentinels, redisMasterName: redisMasterName(env, sentinels) };
}

/** Reads and validates every setting from `env`; throws a `ConfigError` for the first bad one. */
export function loadConfig(env: Env): Config {
  const d = DEFAULT_CONFIG;
  const config = checkEventFitsBuffer({
    port: integer(env, "PORT", d.port, 0, 65_535),
    host: host(env),
    listenBacklog: integer(env, "LISTEN_BACKLOG", d.listenBacklog, 1, 65_535),
    heartbeatMs: integer(env, "HEARTBEAT_MS", d.heartbeatMs, 10, 3_600_000),
    retryMs: integer(env, "RETRY_MS", d.retryMs, 0, 3_600_000),
    retryJitterMs: optionalInteger(env, "RETRY_JITTER_MS", 0, 3_600_000),
    historySize: integer(env, "HISTORY_SIZE", d.historySize, 1, 10_000_000),
    tickMs: integer(env, "TICK_MS", d.tickMs, 100, 60_000),
    corsOrigin: corsOrigin(env),
    maxBodyBytes: integer(env, "MAX_BODY_BYTES", d.maxBodyBytes, 64, 100 * 1_048_576),
    // One Redis script stores a batch: past 10,000 events it would hold Redis for too long.
    maxBatchEvents: integer(env, "MAX_BATCH_EVENTS", d.maxBatchEvents, 1, 10_000),
    maxSubscriberBufferBytes: integer(
      env,
      "MAX_SUBSCRIBER_BUFFER_BYTES",
      d.maxSubscriberBufferBytes,
      1_024,
      1_073_741_824,
    ),
    maxEventBytes: integer(env, "MAX_EVENT_BYTES", d.maxEventBytes, 256, 268_435_456),
    replayDrainTimeoutMs: integer(env, "REPLAY_DRAIN_TIMEOUT_MS", d.replayDrainTimeoutMs, 100, 3_600_000),
    logLevel: oneOf(env, "LOG_LEVEL", LOG_LEVELS, d.logLevel),
    broker: oneOf(env, "BROKER", BROKER_KINDS, d.broker),
    historyTtlS: integer(env, "HISTORY_TTL_S", d.historyTtlS, 0, 31_536_000),
    databasePath: env.DATABASE_PATH?.trim() || d.databasePath,
    redisUrl: redisUrl(env),
    redisPrefix: redisPrefix(env),
    ...redisTopology(env),
    redisWaitReplicas: integer(env, "REDIS_WAIT_REPLICAS", d.redisWaitReplicas, 0, 100),
    redisWaitTimeoutMs: integer(env, "REDIS_WAIT_TIMEOUT_MS", d.redisWaitTimeoutMs, 1, 60_000),
    publisherJwtKey: jwtKey(env, "PUBLISHER_JWT_KEY"),
    subscriberJwtKey: jwtKey(env, "SUBSCRIBER_JWT_KEY"),
    maxConnections: integer(env, "MAX_CONNECTIONS", d.maxConnections, 0, 10_000_000),
    maxConnectionsPerIp: integer(env, "MAX_CONNECTIONS_PER_IP", d.maxConnectionsPerIp, 0, 10_000_000),
    publishRateLimit: integer(env, "PUBLISH_RATE_LIMIT", d.publishRateLimit, 0, 100_000_000),
    maxTopicsPerStream: integer(env, "MAX_TOPICS_PER_STREAM", d.maxTopicsPerStream, 1, 100_000),
    trustProxy: trustProxy(env),
    logFormat: oneOf(env, "LOG_FORMAT", LOG_FORMATS, d.logFormat),
    ...tlsFiles(env),
    subscriptions: subscriptions(env, jwtKey(env, "SUBSCRIBER_JWT_KEY")),
    anonymousSubscribers: bool(env, "ANONYMOUS_SUBSCRIBERS", d.anonymousSubscribers),
    publishOrigins: publishOrigins(env),
  });
  if (!config.anonymousSubscribers && config.subscriberJwtKey === undefined) {
    throw new ConfigError(
      "ANONYMOUS_SUBSCRIBERS=false needs SUBSCRIBER_JWT_KEY: without a key no subscriber token can be valid. Set the key, or leave ANONYMOUS_SUBSCRIBERS unset",
    );
  }
  return config;
}
