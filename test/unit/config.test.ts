import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { ConfigError, DEFAULT_CONFIG, loadConfig } from "../../src/config.js";

const SECRET = "a-test-secret-that-is-32-bytes-long!";
const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
const publicPem = ec.publicKey.export({ type: "spki", format: "pem" }).toString();
const privatePem = ec.privateKey.export({ type: "pkcs8", format: "pem" }).toString();
const smallRsaPem = generateKeyPairSync("rsa", { modulusLength: 1024 })
  .publicKey.export({ type: "spki", format: "pem" })
  .toString();

describe("loadConfig", () => {
  it("gives the documented defaults for an empty environment", () => {
    expect(loadConfig({})).toEqual({
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
    });
    expect(loadConfig({})).toEqual(DEFAULT_CONFIG);
  });

  it("reads every variable", () => {
    expect(
      loadConfig({
        PORT: "8080",
        HOST: "::",
        LISTEN_BACKLOG: "1024",
        HEARTBEAT_MS: "5000",
        RETRY_MS: "0",
        RETRY_JITTER_MS: "250",
        HISTORY_SIZE: "5",
        TICK_MS: "250",
        CORS_ORIGIN: "https://a.example, http://localhost:5173",
        MAX_BODY_BYTES: "1024",
        MAX_BATCH_EVENTS: "50",
        MAX_SUBSCRIBER_BUFFER_BYTES: "2048",
        MAX_EVENT_BYTES: "512",
        REPLAY_DRAIN_TIMEOUT_MS: "500",
        LOG_LEVEL: "debug",
        BROKER: "redis",
        HISTORY_TTL_S: "3600",
        DATABASE_PATH: "/var/lib/herald/events.db",
        REDIS_URL: "redis://10.0.0.5:6380/2",
        REDIS_PREFIX: "eu-herald",
        REDIS_WAIT_REPLICAS: "1",
        REDIS_WAIT_TIMEOUT_MS: "250",
        PUBLISHER_JWT_KEY: SECRET,
        SUBSCRIBER_JWT_KEY: publicPem.replaceAll("\n", "\\n"),
        MAX_CONNECTIONS: "0",
        MAX_CONNECTIONS_PER_IP: "3",
        PUBLISH_RATE_LIMIT: "60",
        MAX_TOPICS_PER_STREAM: "5",
        TRUST_PROXY: "10.0.0.1, 10.1.0.0/16",
        LOG_FORMAT: "json",
        TLS_CERT_FILE: "/etc/herald/cert.pem",
        TLS_KEY_FILE: "/etc/herald/key.pem",
        SUBSCRIPTIONS: "true",
        ANONYMOUS_SUBSCRIBERS: "false",
        PUBLISH_ORIGINS: "https://app.example, http://localhost:8000",
      }),
    ).toEqual({
      port: 8080,
      host: "::",
      listenBacklog: 1_024,
      heartbeatMs: 5_000,
      retryMs: 0,
      retryJitterMs: 250,
      historySize: 5,
      tickMs: 250,
      corsOrigin: ["https://a.example", "http://localhost:5173"],
      maxBodyBytes: 1_024,
      maxBatchEvents: 50,
      maxSubscriberBufferBytes: 2_048,
      maxEventBytes: 512,
      replayDrainTimeoutMs: 500,
      logLevel: "debug",
      broker: "redis",
      historyTtlS: 3_600,
      databasePath: "/var/lib/herald/events.db",
      redisUrl: "redis://10.0.0.5:6380/2",
      redisPrefix: "eu-herald",
      redisSentinels: [],
      redisMasterName: undefined,
      redisWaitReplicas: 1,
      redisWaitTimeoutMs: 250,
      publisherJwtKey: SECRET,
      subscriberJwtKey: publicPem.replaceAll("\n", "\\n"),
      maxConnections: 0,
      maxConnectionsPerIp: 3,
      publishRateLimit: 60,
      maxTopicsPerStream: 5,
      trustProxy: "10.0.0.1, 10.1.0.0/16",
      logFormat: "json",
      tlsCertFile: "/etc/herald/cert.pem",
      tlsKeyFile: "/etc/herald/key.pem",
      subscriptions: true,
      anonymousSubscribers: false,
      publishOrigins: ["https://app.example", "http://localhost:8000"],
    });
    expect(loadConfig({ PUBLISH_ORIGINS: "*" }).publishOrigins).toBe("*");
    expect(() => loadConfig({ ANONYMOUS_SUBSCRIBERS: "false" })).toThrow(
      "ANONYMOUS_SUBSCRIBERS=false needs SUBSCRIBER_JWT_KEY",
    );
    expect(loadConfig({ TRUST_PROXY: "2" }).trustProxy).toBe(2);
  });

  it.each([
    ["PORT", "70000", "use a whole number from 0 to 65535"],
    ["PORT", "3000abc", "use a whole number from 0 to 65535"],
    ["HEARTBEAT_MS", "-1", "from 10 to 3600000"],
    ["RETRY_MS", "1.5", "from 0 to 3600000"],
    ["RETRY_JITTER_MS", "-1", "from 0 to 3600000"],
    ["HISTORY_SIZE", "0", "from 1 to 10000000"],
    ["TICK_MS", "50", "from 100 to 60000"],
    ["MAX_BODY_BYTES", "big", "from 64 to"],
    ["MAX_SUBSCRIBER_BUFFER_BYTES", "1", "from 1024 to"],
    ["REPLAY_DRAIN_TIMEOUT_MS", "10", "from 100 to"],
    ["CORS_ORIGIN", "example.com", "use * or a comma-separated list of origins"],
    ["HOST", "not a host!", "use an IP address (127.0.0.1, or 0.0.0.0 for every interface) or a host name"],
    ["BROKER", "postgres", "use one of memory, sqlite, redis"],
    ["HISTORY_TTL_S", "1h", "from 0 to 31536000"],
    ["REDIS_URL", "localhost:6379", "use redis://host:port"],
    ["REDIS_PREFIX", "has space", "use 1 to 64 characters"],
    ["REDIS_SENTINELS", "10.0.0.1", "use a comma-separated list of host:port"],
    ["REDIS_SENTINELS", "10.0.0.1:26379,:1", "use a comma-separated list of host:port"],
    ["REDIS_WAIT_REPLICAS", "-1", "from 0 to 100"],
    ["REDIS_WAIT_TIMEOUT_MS", "0", "from 1 to 60000"],
    ["LOG_LEVEL", "loud", "use one of fatal, error, warn, info, debug, trace, silent"],
    ["LOG_FORMAT", "colour", "use one of auto, pretty, json"],
    ["MAX_CONNECTIONS", "-5", "from 0 to"],
    ["MAX_TOPICS_PER_STREAM", "0", "from 1 to"],
    ["MAX_EVENT_BYTES", "100", "from 256 to"],
    ["TRUST_PROXY", "proxy.local", "use false, a number of proxy hops, or a comma-separated list"],
    ["TRUST_PROXY", "true", "would let any client choose its own address with X-Forwarded-For"],
    ["ANONYMOUS_SUBSCRIBERS", "no", "use true or false"],
    ["PUBLISH_ORIGINS", "app.example", "use * or a comma-separated list of origins"],
  ])("refuses %s=%s, saying what it accepts", (name, value, accepts) => {
    const load = () => loadConfig({ [name]: value });
    expect(load).toThrow(ConfigError);
    expect(load).toThrow(`${name}=${JSON.stringify(value)} is invalid: `);
    expect(load).toThrow(accepts);
  });
});

describe("loadConfig: TLS files", () => {
  it.each([
    [{ TLS_CERT_FILE: "cert.pem" }, "TLS_CERT_FILE is set but TLS_KEY_FILE is not: set both"],
    [{ TLS_KEY_FILE: "key.pem" }, "TLS_KEY_FILE is set but TLS_CERT_FILE is not: set both"],
  ])("refuses one without the other (%o)", (env, message) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(message);
  });
});

describe("loadConfig: Redis Sentinel", () => {
  it("reads the Sentinels and the primary's name", () => {
    const config = loadConfig({
      REDIS_SENTINELS: "10.0.0.1:26379, sentinel-2:26380,[::1]:26381",
      REDIS_MASTER_NAME: "herald",
    });
    expect(config.redisSentinels).toEqual([
      { host: "10.0.0.1", port: 26379 },
      { host: "sentinel-2", port: 26380 },
      { host: "::1", port: 26381 },
    ]);
    expect(config.redisMasterName).toBe("herald");
  });

  it.each([
    [{ REDIS_SENTINELS: "10.0.0.1:26379" }, "REDIS_SENTINELS is set but REDIS_MASTER_NAME is not"],
    [{ REDIS_MASTER_NAME: "herald" }, "REDIS_MASTER_NAME is set but REDIS_SENTINELS is not"],
    [
      { REDIS_SENTINELS: "10.0.0.1:26379", REDIS_MASTER_NAME: "herald", REDIS_URL: "redis://10.0.0.5:6379" },
      "REDIS_URL and REDIS_SENTINELS are both set",
    ],
  ])("refuses an incomplete or ambiguous set-up (%o)", (env, message) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(message);
  });
});

describe("loadConfig: JWT keys", () => {
  it.each([
    ["a short HS256 secret", "too-short", "at least 32 bytes"],
    ["a private key", privatePem, "give Herald only the public key"],
    [
      "a PEM that does not parse",
      "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----",
      "could not be read",
    ],
    ["an RSA key under 2048 bits", smallRsaPem, "RSA public key of 2048 bits or more"],
  ])("refuses %s, saying how to fix it", (_what, value, reason) => {
    for (const name of ["PUBLISHER_JWT_KEY", "SUBSCRIBER_JWT_KEY"]) {
      const load = () => loadConfig({ [name]: value });
      expect(load).toThrow(ConfigError);
      expect(load).toThrow(`${name} is invalid: `);
      expect(load).toThrow(reason);
    }
  });

  it("refuses a MAX_EVENT_BYTES that four events would take past MAX_SUBSCRIBER_BUFFER_BYTES, saying what to raise", () => {
    const load = () => loadConfig({ MAX_SUBSCRIBER_BUFFER_BYTES: "1048576", MAX_EVENT_BYTES: "262145" });
    expect(load).toThrow(ConfigError);
    expect(load).toThrow("raise MAX_SUBSCRIBER_BUFFER_BYTES to 1048580 or more, or lower MAX_EVENT_BYTES");
    expect(loadConfig({ MAX_SUBSCRIBER_BUFFER_BYTES: "1048576", MAX_EVENT_BYTES: "262144" }).maxEventBytes).toBe(
      262_144,
    );
  });
});
