import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
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
  start(): Promise<void>;
  /** Stops it the way an operator would (SIGTERM: with AOF on, it syncs first). */
  stop(): Promise<void>;
}

/** Starts redis-server on a free port; `persist` turns on AOF with a sync on every write. */
export async function startRedisServer(persist: boolean): Promise<RedisServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "herald-redis-"));
  const url = `redis://127.0.0.1:${port}`;
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--dir", dir];
  args.push(...(persist ? ["--appendonly", "yes", "--appendfsync", "always"] : ["--appendonly", "no"]));
  let child: ChildProcess | undefined;
  const ping = async () => {
    const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    redis.on("error", () => {});
    try {
      await redis.connect();
      return (await redis.ping()) === "PONG";
    } catch {
      return false;
    } finally {
      redis.disconnect();
    }
  };
  const server: RedisServer = {
    url,
    async start() {
      child = spawn("redis-server", args, { stdio: "ignore" });
      await waitFor(`redis-server on port ${port}`, ping, 10_000);
    },
    async stop() {
      const exited = new Promise((resolve) => child?.once("exit", resolve));
      child?.kill("SIGTERM");
      await exited;
    },
  };
  await server.start();
  return server;
}
