/**
 * Publish throughput of each broker: Herald runs as its own process (dist/main.js), a closed-loop
 * publisher keeps a fixed number of publishes in flight over HTTP for a fixed time, and every
 * 201 counts. Usage: npm run bench:brokers [-- --seconds 10 --in-flight 64]
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { Pool } from "undici";

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i] ?? "", process.argv[i + 1] ?? "");
const SECONDS = Number(args.get("--seconds") ?? 10);
const IN_FLIGHT = Number(args.get("--in-flight") ?? 64);
const BODY = JSON.stringify({ topic: "bench", data: { n: 1, text: "x".repeat(64) } });

async function startHerald(env: Record<string, string>): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, ["dist/main.js"], {
    // One client address publishing flat out: lift the per-client limits meant for the open internet.
    env: { ...process.env, HOST: "127.0.0.1", PORT: "0", LOG_LEVEL: "info", PUBLISH_RATE_LIMIT: "0", ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error("Herald did not start within 20 s")), 20_000);
    child.stdout?.on("data", (chunk) => {
      out += chunk;
      const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
  });
  return { child, url };
}

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function measure(name: string, env: Record<string, string>) {
  const { child, url } = await startHerald(env);
  const pool = new Pool(url, { connections: IN_FLIGHT });
  const latencies: number[] = [];
  let ok = 0;
  let failed = 0;
  const cpuBefore = cpuSeconds(child.pid as number);
  const started = performance.now();
  const deadline = started + SECONDS * 1_000;
  const worker = async () => {
    while (performance.now() < deadline) {
      const t = performance.now();
      const res = await pool.request({
        path: "/events",
        method: "POST",
        headers: { "content-type": "application/json" },
        body: BODY,
      });
      await res.body.dump();
      if (res.statusCode === 201) {
        ok++;
        latencies.push(performance.now() - t);
      } else failed++;
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  const elapsed = (performance.now() - started) / 1_000;
  const cpu = cpuSeconds(child.pid as number) - cpuBefore;
  await pool.close();
  child.kill("SIGTERM");
  await new Promise((resolve) => child.once("exit", resolve));
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => (latencies[Math.floor((latencies.length - 1) * p)] ?? 0).toFixed(1);
  return { name, perSecond: Math.round(ok / elapsed), failed, p50: pct(0.5), p99: pct(0.99), cpu: cpu.toFixed(1) };
}

const dbDir = mkdtempSync(join(tmpdir(), "herald-bench-"));
const prefix = `herald-bench-${process.pid}`;
const load = loadavg()[0]?.toFixed(2);
const only = args.get("--broker");
const engines: [string, Record<string, string>][] = [
  ["memory", { BROKER: "memory" }],
  ["sqlite", { BROKER: "sqlite", DATABASE_PATH: join(dbDir, "bench.db") }],
  ["redis", { BROKER: "redis", REDIS_PREFIX: prefix }],
];
const rows = [];
for (const [name, env] of engines) if (only === undefined || only === name) rows.push(await measure(name, env));
rmSync(dbDir, { recursive: true, force: true });

console.log(
  `\nPublish throughput: ${SECONDS} s per broker, ${IN_FLIGHT} publishes in flight (one connection each), no subscribers.`,
);
console.log(
  `Machine: ${cpus()[0]?.model} × ${cpus().length}, Node ${process.version}; load average before: ${load}, after: ${loadavg()[0]?.toFixed(2)}\n`,
);
console.log("| broker | publishes/s | p50 ms | p99 ms | server CPU-s | failed |");
console.log("|---|---|---|---|---|---|");
for (const r of rows) console.log(`| ${r.name} | ${r.perSecond} | ${r.p50} | ${r.p99} | ${r.cpu} | ${r.failed} |`);
