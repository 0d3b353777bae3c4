// A private redis-server on a free port, for benches whose Redis counters must see them alone.
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { Redis } from "ioredis";

async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Starts redis-server without persistence; `admin` is a connection to it, `stop()` ends both. */
export async function startPrivateRedis() {
  const port = await freePort();
  const dir = mkdtempSync(`${tmpdir()}/herald-bench-redis-`);
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir];
  const server = spawn("redis-server", args, { stdio: "ignore" });
  const url = `redis://127.0.0.1:${port}`;
  const admin = new Redis(url, { retryStrategy: (n) => (n > 50 ? null : 100) });
  admin.on("error", () => {});
  await admin.ping();
  return {
    url,
    admin,
    async stop() {
      admin.disconnect();
      server.kill("SIGTERM");
    },
  };
}

/** redis-server's CPU time so far, in ms. */
export async function redisCpuMs(admin) {
  const info = await admin.info("cpu");
  const field = (name) => Number(new RegExp(`${name}:([\\d.]+)`).exec(info)?.[1]);
  return (field("used_cpu_user") + field("used_cpu_sys")) * 1000;
}

/** This process's CPU time so far, in ms. */
export function nodeCpuMs() {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}
