/**
 * `npm run bench [-- options]`: runs every scenario against Herald and its peers, in separate
 * processes, and writes the results (Markdown and JSON). Options:
 *   --quick              smaller scenarios, one run: about a minute
 *   --runs <n>           runs of everything (default 3; 1 with --quick); figures are medians
 *   --servers <a,b>      herald, nchan, plain-http, better-sse, fastify-sse (default: all; nchan only
 *                        when nginx and its nchan module are installed, see peers/nchan.ts)
 *   --scenarios <a,b>    fanout-1k, fanout-10k, idle, slow, publish (default: all)
 *   --workers <n>        load-generator processes (default 4)
 *   --out <file.md>      where to write (default bench/RESULTS.md; bench/RESULTS-quick.md with --quick)
 *   --node-args=<args>   extra node options for the servers, e.g. --node-args="--cpu-prof --cpu-prof-dir=/tmp/prof"
 * A full run (no --quick, --servers or --scenarios) ends with `bench:publish` (publish-throughput.ts).
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg, release, totalmem } from "node:os";
import { parseArgs } from "node:util";
import { cpuBusyPercent } from "./machine.js";
import { findNchan, nchanServer } from "./peers/nchan.js";
import { type Outcome, type Results, renderMarkdown } from "./report.js";
import { FULL, fanout, idle, publishRate, QUICK, type Scenario, slowClients } from "./scenarios.js";
import { killAllServers, type ServerSpec } from "./server-process.js";
import { WorkerPool } from "./worker-pool.js";

const root = (path: string) => new URL(`../${path}`, import.meta.url).pathname;
const peer = (name: string) => new URL(`./peers/${name}.js`, import.meta.url).pathname;

const nchan = findNchan();
const SERVERS: ServerSpec[] = [
  // Per-request log lines would dominate a publish benchmark; warnings and errors still log.
  {
    name: "herald",
    label: "Herald",
    script: root("dist/main.js"),
    // The load comes from five loopback addresses: the per-client limits meant for the open internet
    // (100 streams per address, 6,000 publishes a minute) would refuse most of it. 19,000 streams
    // need more than the default MAX_CONNECTIONS too.
    env: { LOG_LEVEL: "warn", MAX_CONNECTIONS: "0", MAX_CONNECTIONS_PER_IP: "0", PUBLISH_RATE_LIMIT: "0" },
    // The peers keep no history. Herald's would hold 50 MB of these events by design (HISTORY_SIZE
    // counts events), which would hide what the stalled clients cost.
    envFor: { slow: { HISTORY_SIZE: "100" } },
  },
  // The fastest peer, when installed; not a Node server.
  ...("missing" in nchan ? [] : [nchanServer(nchan)]),
  { name: "plain-http", label: "node:http", script: peer("plain-http") },
  { name: "better-sse", label: "better-sse", script: peer("better-sse") },
  { name: "fastify-sse", label: "@fastify/sse", script: peer("fastify-sse") },
];

const SCENARIOS: Record<string, Scenario> = {
  "fanout-1k": fanout(1_000),
  "fanout-10k": fanout(10_000),
  idle,
  slow: slowClients,
  publish: publishRate,
};

const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    runs: { type: "string" },
    servers: { type: "string" },
    scenarios: { type: "string" },
    workers: { type: "string", default: "4" },
    out: { type: "string" },
    "node-args": { type: "string" },
  },
});

function pick<T>(all: Record<string, T>, list: string | undefined, what: string): string[] {
  const names = list?.split(",") ?? Object.keys(all);
  for (const name of names) {
    if (!(name in all)) throw new Error(`unknown ${what} "${name}": use ${Object.keys(all).join(", ")}`);
  }
  return names;
}

const skipped: NonNullable<Results["skipped"]> = [];
if ("missing" in nchan) {
  if (args.servers?.split(",").includes("nchan")) {
    console.error(`bench: nginx+nchan cannot run: ${nchan.missing}`);
    process.exit(1);
  }
  if (args.servers === undefined) {
    console.log(`bench: skipping the nginx+nchan peer: ${nchan.missing}`);
    skipped.push({ label: "nginx+nchan", reason: nchan.missing });
  }
}

const quick = args.quick;
const scale = quick ? QUICK : FULL;
const runs = Number(args.runs ?? (quick ? 1 : 3));
const nodeArgs = args["node-args"]?.split(" ").filter((a) => a !== "");
const servers = pick(Object.fromEntries(SERVERS.map((s) => [s.name, s])), args.servers, "server").map(
  (name): ServerSpec => ({ ...(SERVERS.find((s) => s.name === name) as ServerSpec), nodeArgs }),
);
const scenarios = pick(SCENARIOS, args.scenarios, "scenario");
const out = args.out ?? root(quick ? "bench/RESULTS-quick.md" : "bench/RESULTS.md");
/** The whole bench, whatever happens, ends within this. */
const HARD_LIMIT_MS = (quick ? 5 : 90) * 60_000 * Math.max(1, runs / 3);

// Before the bench starts a process of its own: what else keeps the machine busy.
const cpuBusyBefore = await cpuBusyPercent();
const pool = new WorkerPool(Number(args.workers));
const cleanUp = () => {
  pool.kill();
  killAllServers();
};
process.on("exit", cleanUp);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    console.error(`bench: ${signal}, stopping every process it started`);
    // What finished so far stays in the results, marked as stopped; a run with nothing finished goes.
    results.runs = results.runs.filter((run) => Object.values(run.outcomes).some((o) => Object.keys(o).length > 0));
    if (results.runs.length > 0) {
      results.stopped = `${signal} after ${((Date.now() - startedAt) / 60_000).toFixed(0)} minutes`;
      write();
    }
    process.exit(130);
  });
}
setTimeout(() => {
  console.error(`bench: still running after ${HARD_LIMIT_MS / 60_000} minutes: giving up`);
  process.exit(1);
}, HARD_LIMIT_MS).unref();

const load = () => loadavg().map((l) => Number(l.toFixed(2)));
const startedAt = Date.now();
const results: Results = {
  date: new Date().toISOString(),
  command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`,
  quick,
  machine: {
    cpu: /model name\s*:\s*(.*)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "unknown",
    cores: cpus().length,
    node: process.version,
    kernel: release(),
    memoryGb: Math.round(totalmem() / 1024 ** 3),
  },
  servers: servers.map(({ name, label, about }) => ({ name, label, ...(about ? { about } : {}) })),
  skipped,
  cpuBusyBefore,
  runs: [],
};

const write = () => {
  writeFileSync(out.replace(/\.md$/, ".json"), `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(out, renderMarkdown(results));
};

for (let r = 0; r < runs; r++) {
  const run: Results["runs"][number] = {
    loadStart: load(),
    loadEnd: [],
    outcomes: Object.fromEntries(servers.map((s) => [s.name, {}])),
  };
  results.runs.push(run);
  for (const scenario of scenarios) {
    for (const server of servers) {
      const started = Date.now();
      const outcomes = run.outcomes[server.name] as Record<string, Outcome>;
      try {
        const spec = { ...server, env: { ...server.env, ...server.envFor?.[scenario] } };
        outcomes[scenario] = await (SCENARIOS[scenario] as Scenario)(spec, pool, scale);
      } catch (err) {
        outcomes[scenario] = { error: (err as Error).message };
      }
      const took = ((Date.now() - started) / 1000).toFixed(1);
      console.log(`run ${r + 1}/${runs} ${scenario} ${server.name} (${took} s): ${JSON.stringify(outcomes[scenario])}`);
    }
    // After each scenario, so a long run stopped halfway keeps what it measured.
    run.loadEnd = load();
    write();
  }
}
console.log(`bench: wrote ${out}`);
// Herald alone (no peer publishes batches): its own file, which RESULTS.md links to.
if (!quick && args.servers === undefined && args.scenarios === undefined) {
  // Stop this bench's workers first: idle as they are, they would count in bench:publish's CPU sample.
  cleanUp();
  execFileSync(process.execPath, [new URL("./publish-throughput.js", import.meta.url).pathname], { stdio: "inherit" });
}
process.exit(0);
