import type { FastifyBaseLogger } from "fastify";
import type { Config } from "./config.js";

/** What Herald runs with, as printed once it listens: enough to see a misconfiguration at a glance. */
export interface StartupSummary {
  version: string;
  /** Where it listens: `http://<HOST>:<port>`. */
  url: string;
  /** The broker and where its history lives; a Redis URL comes without its password. */
  broker: { kind: Config["broker"]; target?: string; prefix?: string };
  history: { size: number; ttlS: number };
  /** `token`: a token is needed (the key is set); otherwise publishing is open and private events are refused. */
  auth: { publishers: "token" | "open"; subscribers: "token" | "no private events" };
  /** 0 means no limit. */
  limits: {
    maxConnections: number;
    maxConnectionsPerIp: number;
    publishesPerMinute: number;
    maxTopicsPerStream: number;
    maxBodyBytes: number;
  };
}

/** A Redis URL fit to print: its password, if any, replaced by `***`. */
export function redactUrl(raw: string): string {
  try {
    const url = new URL(raw);
    if (url.password === "") return raw;
    url.password = "***";
    return url.toString();
  } catch {
    return "(unparseable URL)";
  }
}

/** `http://<host>:<port>`, with an IPv6 host in brackets. */
export function listenUrl(protocol: string, host: string, port: number): string {
  return `${protocol}//${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/** The summary of `config` for a server listening at `url`. */
export function describeStartup(config: Config, url: string, version: string): StartupSummary {
  const broker: StartupSummary["broker"] =
    config.broker === "sqlite"
      ? { kind: "sqlite", target: config.databasePath }
      : config.broker === "redis"
        ? { kind: "redis", target: redactUrl(config.redisUrl), prefix: config.redisPrefix }
        : { kind: "memory" };
  return {
    version,
    url,
    broker,
    history: { size: config.historySize, ttlS: config.historyTtlS },
    auth: {
      publishers: config.publisherJwtKey === undefined ? "open" : "token",
      subscribers: config.subscriberJwtKey === undefined ? "no private events" : "token",
    },
    limits: {
      maxConnections: config.maxConnections,
      maxConnectionsPerIp: config.maxConnectionsPerIp,
      publishesPerMinute: config.publishRateLimit,
      maxTopicsPerStream: config.maxTopicsPerStream,
      maxBodyBytes: config.maxBodyBytes,
    },
  };
}

const limit = (n: number) => (n === 0 ? "no limit" : String(n));

/** The summary as a few lines for a person: the first says where Herald listens. */
export function summaryLines(s: StartupSummary): string[] {
  const broker =
    s.broker.kind === "memory"
      ? "memory (history in this process: a restart forgets it)"
      : s.broker.kind === "sqlite"
        ? `sqlite, ${s.broker.target} (DATABASE_PATH)`
        : `redis, ${s.broker.target} (REDIS_URL), keys under ${s.broker.prefix}:`;
  const age = s.history.ttlS === 0 ? "no age limit" : `each kept ${s.history.ttlS} s at most (HISTORY_TTL_S)`;
  const publishers =
    s.auth.publishers === "token" ? "publishers need a token" : "anyone may publish (PUBLISHER_JWT_KEY unset)";
  const subscribers =
    s.auth.subscribers === "token"
      ? "private events go to subscribers whose token covers them"
      : "private events refused (SUBSCRIBER_JWT_KEY unset)";
  const l = s.limits;
  return [
    `Herald ${s.version} listening at ${s.url} (the dashboard is at ${s.url}/)`,
    `  broker   ${broker}`,
    `  history  the last ${s.history.size} events (HISTORY_SIZE), ${age}`,
    `  auth     ${publishers}; ${subscribers}`,
    `  streams  ${limit(l.maxConnections)} in all (MAX_CONNECTIONS, /stats/stream watchers included), ` +
      `${limit(l.maxConnectionsPerIp)} per address (MAX_CONNECTIONS_PER_IP), ${l.maxTopicsPerStream} topics each`,
    `  publish  ${limit(l.publishesPerMinute)} a minute per client (PUBLISH_RATE_LIMIT), bodies up to ` +
      `${l.maxBodyBytes} bytes; a limit set to 0 is lifted`,
    "  help     node dist/main.js --help lists every setting",
  ];
}

/**
 * Logs the summary once Herald listens, at `info` whatever `LOG_LEVEL` is (but `silent`), so it
 * shows at `warn` too: several lines when logs are pretty, one JSON record with the summary's
 * fields otherwise.
 */
export function logStartupSummary(log: FastifyBaseLogger, summary: StartupSummary, pretty: boolean): void {
  if (log.level === "silent") return;
  const always = log.child({}, { level: "info" });
  const lines = summaryLines(summary);
  if (pretty) always.info(lines.join("\n"));
  else always.info({ summary }, lines[0]);
}
