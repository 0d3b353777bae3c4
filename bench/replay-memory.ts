/**
 * Memory held by Last-Event-ID replays whose clients stop reading. Herald runs as its own process
 * (dist/main.js, BROKER=sqlite); the bench fills history, opens K raw sockets that each ask for a
 * replay from the first id and never read, samples the server's RSS while they are stalled, then
 * waits for REPLAY_DRAIN_TIMEOUT_MS to drop them. Usage:
 *   npm run bench:replay-memory [-- --events 2000,8000 --size 8192 --stalled 5,50 --main dist/main.js]
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { Pool } from "undici";

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i] ?? "", process.argv[i + 1] ?? "");
const list = (name: string, fallback: string) => (args.get(name) ?? fallback).split(",").map(Number);
const EVENTS = list("--events", "2000,8000");
const STALLED = list("--stalled", "5,50");
const SIZE = Number(args.get("--size") ?? 8192);
const MAIN = args.get("--main") ?? "dist/main.js";
/** How long the stalled sockets are sampled, below the 10 s drain deadline. */
const STALL_SAMPLE_MS = 8_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function rssMb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+) kB/);
  return Number(line?.[1] ?? 0) / 1024;
}

async function startHerald(env: Record<string, string>): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [MAIN], {
    env: {
      PATH: process.env.PATH ?? "",
      HOST: "127.0.0.1",
      PORT: "0",
      // "info": the "Server listening at" line is how the bench learns the port.
      LOG_LEVEL: "info",
      PUBLISH_RATE_LIMIT: "0",
      MAX_CONNECTIONS_PER_IP: "0",
      ...env,
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error("Herald did not start within 30 s")), 30_000);
    child.stdout?.on("data", (chunk) => {
      out += chunk;
      const match = /listening at (http:\/\/127\.0\.0\.1:\d+)/i.exec(out);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
  });
  process.once("exit", () => child.kill("SIGKILL"));
  return { child, url };
}

async function fill(url: string, events: number): Promise<string> {
  const pool = new Pool(url, { connections: 16 });
  const data = "x".repeat(SIZE);
  let next = 1;
  const worker = async () => {
    while (next < events) {
      const n = next++;
      const res = await pool.request({
        path: "/events",
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ topic: "big", data: `${n} ${data}` }),
      });
      await res.body.dump();
      if (res.statusCode !== 201) throw new Error(`publish answered ${res.statusCode}`);
    }
  };
  // The first event alone, so that it is the oldest: the stalled clients resume from it.
  const res = await pool.request({
    path: "/events",
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ topic: "big", data: `0 ${data}` }),
  });
  const first = ((await res.body.json()) as { id: string }).id;
  await Promise.all(Array.from({ length: 16 }, worker));
  await pool.close();
  return first;
}

function stalled(url: string, lastEventId: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname, () => {
      socket.write(`GET /events?topic=big HTTP/1.1\r\nHost: x\r\nLast-Event-ID: ${lastEventId}\r\n\r\n`);
      socket.pause();
      resolve(socket);
    });
    socket.on("error", () => {});
  });
}

async function stats(url: string): Promise<{ closedTooSlow: number; connections: number }> {
  const res = await fetch(`${url}/stats`);
  return (await res.json()) as { closedTooSlow: number; connections: number };
}

const rows: string[] = [];
console.log(
  `machine: ${cpus().length} × ${cpus()[0]?.model}, ${Math.round(totalmem() / 2 ** 30)} GB; node ${process.version}`,
);
console.log(
  `load average at start: ${loadavg()
    .map((l) => l.toFixed(2))
    .join(" ")}`,
);
for (const events of EVENTS) {
  for (const k of STALLED) {
    const dir = mkdtempSync(join(tmpdir(), "herald-bench-replay-"));
    const { child, url } = await startHerald({
      BROKER: "sqlite",
      DATABASE_PATH: join(dir, "herald.db"),
      HISTORY_SIZE: String(events),
    });
    const pid = child.pid as number;
    try {
      const first = await fill(url, events);
      await sleep(1_000);
      const before = rssMb(pid);
      const sockets = await Promise.all(Array.from({ length: k }, () => stalled(url, first)));
      let peak = before;
      const started = Date.now();
      while (Date.now() - started < STALL_SAMPLE_MS) {
        peak = Math.max(peak, rssMb(pid));
        await sleep(100);
      }
      const deadline = Date.now() + 60_000;
      while ((await stats(url)).closedTooSlow < k && Date.now() < deadline) await sleep(200);
      const dropped = (await stats(url)).closedTooSlow;
      await sleep(2_000);
      const after = rssMb(pid);
      for (const s of sockets) s.destroy();
      const row = `| ${events.toLocaleString("en")} × ${SIZE / 1024} KiB (${Math.round((events * SIZE) / 2 ** 20)} MiB) | ${k} | ${before.toFixed(0)} | ${peak.toFixed(0)} | ${((peak - before) / k).toFixed(2)} | ${dropped} of ${k} | ${after.toFixed(0)} |`;
      console.log(row);
      rows.push(row);
    } finally {
      child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  }
}
console.log(
  `load average at end: ${loadavg()
    .map((l) => l.toFixed(2))
    .join(" ")}`,
);
console.log(
  "\n| history | stalled replayers | RSS before (MB) | RSS peak while stalled (MB) | MB per stalled replayer | dropped by the deadline | RSS after (MB) |",
);
console.log("| --- | --- | --- | --- | --- | --- | --- |");
for (const row of rows) console.log(row);
