/**
 * `npm run bench:http2 [-- options]`: Herald's fan-out over HTTP/2 beside HTTP/1.1, same run,
 * same machine. For each way of connecting, a fresh `node dist/main.js`; N subscribers held by two
 * worker processes; then:
 *   - RSS per idle stream: the server's RSS after opening the N streams, minus before, over N;
 *   - a fixed publish rate for a fixed time: the server's CPU per million deliveries, and publish →
 *     deliver latency p50/p99 (every subscriber must get every event, or the mode reports an error).
 * Options:
 *   --quick              500 subscribers, 3 s (about a minute in all); default 1,000 and 10 s
 *   --modes <a,b>        h1, h1-tls, h2-1, h2-100 (default: all)
 *   --out <file.md>      default bench/RESULTS-http2.md (bench/RESULTS-http2-quick.md with --quick)
 *   --node-args=<args>   extra node options for the server, e.g. --node-args="--cpu-prof --cpu-prof-dir=/tmp/prof"
 */
import { type ChildProcess, execFileSync, fork } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg, release, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Pool } from "undici";
import { Histogram } from "./histogram.js";
import type { H2Command, H2Report, Mode } from "./http2-worker.js";
import { nowUs, TOPIC } from "./publisher.js";
import { killAllServers, startServer } from "./server-process.js";

interface ModeSpec {
  name: string;
  label: string;
  mode: Mode;
  perConnection: number;
}

const MODES: ModeSpec[] = [
  { name: "h1", label: "HTTP/1.1, plain (no TLS)", mode: "h1", perConnection: 1 },
  { name: "h1-tls", label: "HTTP/1.1 over TLS", mode: "h1-tls", perConnection: 1 },
  { name: "h2-1", label: "HTTP/2, 1 stream per connection", mode: "h2", perConnection: 1 },
  { name: "h2-100", label: "HTTP/2, 100 streams per connection", mode: "h2", perConnection: 100 },
];

const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    modes: { type: "string" },
    out: { type: "string" },
    "node-args": { type: "string" },
  },
});
const quick = args.quick;
const SUBSCRIBERS = quick ? 500 : 1_000;
const RATE_PER_S = 20;
const SECONDS = quick ? 3 : 10;
const PADDING = 80;
const WORKERS = 2;
const root = (path: string) => new URL(`../${path}`, import.meta.url).pathname;
const out = args.out ?? root(quick ? "bench/RESULTS-http2-quick.md" : "bench/RESULTS-http2.md");
const modes = (args.modes?.split(",") ?? MODES.map((m) => m.name)).map((name) => {
  const spec = MODES.find((m) => m.name === name);
  if (spec === undefined) throw new Error(`unknown mode ${name}: use ${MODES.map((m) => m.name).join(", ")}`);
  return spec;
});
const nodeArgs = args["node-args"]?.split(" ").filter((a) => a !== "");
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(", ");

// The whole bench, whatever happens, ends within this.
setTimeout(() => {
  console.error("bench:http2: still running after 15 minutes: giving up");
  process.exit(1);
}, 15 * 60_000).unref();

const dir = mkdtempSync(join(tmpdir(), "herald-bench-tls-"));
const certFile = join(dir, "cert.pem");
const keyFile = join(dir, "key.pem");
execFileSync(
  "openssl",
  [
    ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"],
    ...["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", keyFile, "-out", certFile],
  ],
  { stdio: "ignore" },
);
const ca = readFileSync(certFile, "utf8");

/** Two load workers, driven by request/answer over IPC. */
class Workers {
  readonly #children: ChildProcess[] = [];
  #seq = 0;
  constructor(count: number) {
    for (let i = 0; i < count; i++) this.#children.push(fork(new URL("./http2-worker.js", import.meta.url).pathname));
  }
  /** Sends `make(i)` to each worker i; resolves with their answers. */
  all<T>(make: (i: number) => Omit<H2Command, "seq">): Promise<T[]> {
    return Promise.all(
      this.#children.map(
        (child, i) =>
          new Promise<T>((resolve, reject) => {
            const seq = ++this.#seq;
            const onMessage = (m: { seq: number; ok: boolean; error?: string; report?: T }) => {
              if (m.seq !== seq) return;
              child.off("message", onMessage);
              if (m.ok) resolve(m.report as T);
              else reject(new Error(m.error));
            };
            child.on("message", onMessage);
            child.send({ ...make(i), seq });
          }),
      ),
    );
  }
  kill(): void {
    for (const child of this.#children) child.kill("SIGKILL");
  }
}

interface Figures {
  load: string;
  rssPerStreamKb: number;
  cpuSPerMillion: number;
  p50Ms: number;
  p99Ms: number;
  deliveries: number;
}

async function measure(spec: ModeSpec, workers: Workers): Promise<Figures> {
  const tls = spec.mode !== "h1";
  const startedLoad = load();
  const server = await startServer(
    {
      name: spec.name,
      label: spec.label,
      script: root("dist/main.js"),
      env: {
        LOG_LEVEL: "warn",
        MAX_CONNECTIONS: "0",
        MAX_CONNECTIONS_PER_IP: "0",
        PUBLISH_RATE_LIMIT: "0",
        ...(tls && { TLS_CERT_FILE: certFile, TLS_KEY_FILE: keyFile }),
      },
      nodeArgs,
    },
    30_000,
  );
  // Publishes go the same way in every TLS mode (HTTP/1.1 over TLS), so only the streams differ.
  const publisher = new Pool(`${tls ? "https" : "http"}://127.0.0.1:${server.port}`, {
    connections: 2,
    connect: { ca, ALPNProtocols: ["http/1.1"] },
  });
  try {
    await sleep(500);
    const rssBefore = server.rssBytes();
    const share = SUBSCRIBERS / WORKERS;
    await workers.all((_i) => ({
      cmd: "open",
      mode: spec.mode,
      port: server.port,
      count: share,
      perConnection: spec.perConnection,
      ca,
    }));
    await sleep(1_000);
    const rssPerStreamKb = (server.rssBytes() - rssBefore) / SUBSCRIBERS / 1024;

    await workers.all(() => ({ cmd: "phase" }));
    const count = RATE_PER_S * SECONDS;
    const cpuBefore = server.cpuSeconds();
    const start = Date.now();
    const pad = "x".repeat(PADDING);
    const publishes: Promise<unknown>[] = [];
    for (let i = 0; i < count; i++) {
      const wait = start + (i * 1000) / RATE_PER_S - Date.now();
      if (wait > 0) await sleep(wait);
      publishes.push(
        publisher
          .request({
            path: "/events",
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ topic: TOPIC, data: `${nowUs()} ${pad}` }),
          })
          .then((res) => res.body.dump()),
      );
    }
    await Promise.all(publishes);
    let reports: H2Report[] = [];
    const deadline = Date.now() + 20_000;
    for (;;) {
      reports = await workers.all<H2Report>(() => ({ cmd: "report" }));
      if (reports.every((r) => r.minEvents >= count) || Date.now() > deadline) break;
      await sleep(100);
    }
    const cpu = server.cpuSeconds() - cpuBefore;
    for (const r of reports) {
      if (r.closed > 0) throw new Error(`the server closed ${r.closed} streams`);
      if (r.minEvents !== count || r.maxEvents !== count) {
        throw new Error(`streams got ${r.minEvents} to ${r.maxEvents} events of ${count}`);
      }
    }
    const latency = new Histogram();
    for (const r of reports) latency.merge(Histogram.fromJSON(r.latency));
    const deliveries = count * SUBSCRIBERS;
    return {
      load: startedLoad,
      rssPerStreamKb: Number(rssPerStreamKb.toFixed(1)),
      cpuSPerMillion: Number(((cpu / deliveries) * 1e6).toFixed(1)),
      p50Ms: Number((latency.percentile(50) / 1000).toFixed(1)),
      p99Ms: Number((latency.percentile(99) / 1000).toFixed(1)),
      deliveries,
    };
  } finally {
    await workers.all(() => ({ cmd: "close" })).catch(() => {});
    await publisher.destroy().catch(() => {});
    await server.stop();
  }
}

const workers = new Workers(WORKERS);
process.on("exit", () => {
  workers.kill();
  killAllServers();
});
const results: Record<string, Figures | { error: string }> = {};
for (const spec of modes) {
  try {
    results[spec.name] = await measure(spec, workers);
  } catch (err) {
    results[spec.name] = { error: (err as Error).message };
  }
  console.log(`${spec.name}: ${JSON.stringify(results[spec.name])}`);
}

const base = results.h1 && "cpuSPerMillion" in results.h1 ? results.h1.cpuSPerMillion : undefined;
const baseTls =
  results["h1-tls"] && "cpuSPerMillion" in results["h1-tls"] ? results["h1-tls"].cpuSPerMillion : undefined;
const ratio = (value: number, of: number | undefined) => (of === undefined ? "–" : `${(value / of).toFixed(2)}×`);
const rows = modes.map((spec) => {
  const r = results[spec.name] as Figures | { error: string };
  if ("error" in r) return `| ${spec.label} | error: ${r.error} | | | | | | |`;
  return `| ${spec.label} | ${r.cpuSPerMillion} | ${ratio(r.cpuSPerMillion, base)} | ${ratio(r.cpuSPerMillion, baseTls)} | ${r.p50Ms} | ${r.p99Ms} | ${r.rssPerStreamKb} | ${r.load} |`;
});
const cpu = /model name\s*:\s*(.*)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "unknown";
writeFileSync(
  out,
  `# Herald over HTTP/2 beside HTTP/1.1

${new Date().toISOString()} · \`npm run bench:http2${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}\` · ${cpu}, ${cpus().length} cores, Linux ${release()}, Node ${process.version}

${SUBSCRIBERS} subscribers to one topic, held by ${WORKERS} worker processes; ${RATE_PER_S} events/s of ~${PADDING + 20} bytes for ${SECONDS} s (${(RATE_PER_S * SUBSCRIBERS).toLocaleString("en")} deliveries/s); every subscriber got every event. CPU is the server process's own (utime + stime); RSS per stream is the server's RSS growth when the ${SUBSCRIBERS} streams opened, over ${SUBSCRIBERS}. Load is the 1/5/15-minute load average when the mode started (the machine is shared).

| streams | CPU s per million deliveries | × plain HTTP/1.1 | × HTTP/1.1 over TLS | p50 ms | p99 ms | RSS KB per idle stream | load |
| --- | --- | --- | --- | --- | --- | --- | --- |
${rows.join("\n")}
`,
);
console.log(`bench:http2: wrote ${out}`);
process.exit(0);
