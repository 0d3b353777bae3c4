import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { waitFor } from "./wait.js";

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

/** A private redis-server for one test file, which the test may stop and start again. */
export interface RedisServer {
  url: string;
  port: number;
  start(): Promise<void>;
  /** Stops it the way an operator would (SIGTERM: with AOF on, it syncs first). */
  stop(): Promise<void>;
  /** Kills it with SIGKILL, as a crash would: nothing is synced, connections drop at once. */
  kill(): Promise<void>;
}

/** Options for `startRedisServer`. */
export interface RedisServerOptions {
  /** Starts it as a replica of the Redis on this port (127.0.0.1). */
  replicaOf?: number;
}

/** Runs `command` on a fresh connection to 127.0.0.1:`port`; undefined when it cannot connect. */
export async function redisCall(port: number, ...command: string[]): Promise<unknown> {
  const redis = new Redis(port, "127.0.0.1", { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on("error", () => {});
  try {
    await redis.connect();
    return await redis.call(command[0] as string, ...command.slice(1));
  } catch {
    return undefined;
  } finally {
    redis.disconnect();
  }
}

/** Starts redis-server on a free port; `persist` turns on AOF with a sync on every write. */
export async function startRedisServer(persist: boolean, options: RedisServerOptions = {}): Promise<RedisServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "herald-redis-"));
  const url = `redis://127.0.0.1:${port}`;
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--dir", dir];
  args.push(...(persist ? ["--appendonly", "yes", "--appendfsync", "always"] : ["--appendonly", "no"]));
  if (options.replicaOf !== undefined) args.push("--replicaof", "127.0.0.1", String(options.replicaOf));
  let child: ChildProcess | undefined;
  const server: RedisServer = {
    url,
    port,
    async start() {
      child = spawn("redis-server", args, { stdio: "ignore" });
      await waitFor(`redis-server on port ${port}`, async () => (await redisCall(port, "PING")) === "PONG", 10_000);
    },
    async stop() {
      const exited = new Promise((resolve) => child?.once("exit", resolve));
      child?.kill("SIGTERM");
      await exited;
    },
    async kill() {
      if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child?.once("exit", resolve));
      child.kill("SIGKILL");
      await exited;
    },
  };
  await server.start();
  return server;
}

/** Three (or `count`) private redis-sentinel processes watching one primary. */
export interface Sentinels {
  /** `host:port,…`, as REDIS_SENTINELS takes it. */
  list: string;
  addresses: { host: string; port: number }[];
  /** The name they know the primary by (REDIS_MASTER_NAME). */
  masterName: string;
  /** The port of the primary the Sentinels name now. */
  primaryPort(): Promise<number | undefined>;
  stop(): Promise<void>;
}

/** Options for `startSentinels`. */
export interface SentinelOptions {
  count?: number;
  /** How long a primary must be silent before a Sentinel calls it down. */
  downAfterMs?: number;
  failoverTimeoutMs?: number;
  /** Wait until every Sentinel knows this many replicas (and the other Sentinels) before resolving. */
  replicas?: number;
}

/** Starts Sentinels on free ports for the primary on `primaryPort`, with a quorum of a majority. */
export async function startSentinels(primaryPort: number, options: SentinelOptions = {}): Promise<Sentinels> {
  const count = options.count ?? 3;
  const masterName = "herald";
  const ports = await Promise.all(Array.from({ length: count }, freePort));
  const children = ports.map((port) => {
    const dir = mkdtempSync(join(tmpdir(), "herald-sentinel-"));
    const conf = join(dir, "sentinel.conf");
    writeFileSync(
      conf,
      [
        `port ${port}`,
        "bind 127.0.0.1",
        `dir ${dir}`,
        `sentinel monitor ${masterName} 127.0.0.1 ${primaryPort} ${Math.floor(count / 2) + 1}`,
        `sentinel down-after-milliseconds ${masterName} ${options.downAfterMs ?? 1_000}`,
        `sentinel failover-timeout ${masterName} ${options.failoverTimeoutMs ?? 5_000}`,
        `sentinel parallel-syncs ${masterName} 1`,
        "",
      ].join("\n"),
    );
    return spawn("redis-sentinel", [conf], { stdio: "ignore" });
  });
  const addresses = ports.map((port) => ({ host: "127.0.0.1", port }));
  const knowsAll = async (port: number) => {
    const replicas = (await redisCall(port, "SENTINEL", "REPLICAS", masterName)) as unknown[] | undefined;
    const peers = (await redisCall(port, "SENTINEL", "SENTINELS", masterName)) as unknown[] | undefined;
    return (
      replicas !== undefined &&
      peers !== undefined &&
      replicas.length >= (options.replicas ?? 0) &&
      peers.length === count - 1
    );
  };
  for (const port of ports)
    await waitFor(`redis-sentinel on port ${port} to see the set-up`, () => knowsAll(port), 20_000);
  return {
    list: addresses.map((a) => `${a.host}:${a.port}`).join(","),
    addresses,
    masterName,
    async primaryPort() {
      for (const port of ports) {
        const reply = (await redisCall(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", masterName)) as
          | string[]
          | undefined;
        if (reply?.[1] !== undefined) return Number(reply[1]);
      }
      return undefined;
    },
    async stop() {
      await Promise.all(
        children.map((child) => {
          if (child.exitCode !== null || child.signalCode !== null) return undefined;
          const exited = new Promise((resolve) => child.once("exit", resolve));
          child.kill("SIGKILL");
          return exited;
        }),
      );
    },
  };
}
