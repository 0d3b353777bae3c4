import { OTHER_WORK_PERCENT } from "./machine.js";
import type { Figures } from "./scenarios.js";

/** One figure the results table shows. */
export interface Metric {
  scenario: string;
  key: string;
  label: string;
  better: "higher" | "lower";
  digits: number;
}

/** Every figure in the results table, in order. */
export const METRICS: Metric[] = [
  ...[1_000, 10_000].flatMap((n): Metric[] => {
    const scenario = `fanout-${n / 1000}k`;
    const N = `N = ${n.toLocaleString("en")}`;
    return [
      { scenario, key: "deliveriesPerS", label: `${N}: deliveries/s, closed loop`, better: "higher", digits: 0 },
      {
        scenario,
        key: "cpuPerMillion",
        label: `${N}: server CPU-s per million deliveries, closed loop`,
        better: "lower",
        digits: 2,
      },
      {
        scenario,
        key: "cpuPerMillionFixedRate",
        label: `${N}: server CPU-s per million deliveries, 20,000 deliveries/s`,
        better: "lower",
        digits: 2,
      },
      { scenario, key: "p50Ms", label: `${N}: latency p50 (ms), 20,000 deliveries/s`, better: "lower", digits: 2 },
      { scenario, key: "p99Ms", label: `${N}: latency p99 (ms)`, better: "lower", digits: 2 },
      { scenario, key: "maxMs", label: `${N}: latency max (ms)`, better: "lower", digits: 2 },
    ];
  }),
  { scenario: "idle", key: "kbPerStream", label: "RSS per idle stream (KB)", better: "lower", digits: 2 },
  {
    scenario: "idle",
    key: "streams",
    label: "idle streams held, each then given an event",
    better: "higher",
    digits: 0,
  },
  {
    scenario: "slow",
    key: "rssGrowthMb",
    label: "RSS growth (MB), 10 clients not reading",
    better: "lower",
    digits: 1,
  },
  { scenario: "slow", key: "readerSlowdown", label: "readers' time with them ÷ without", better: "lower", digits: 2 },
  {
    scenario: "publish",
    key: "publishesPerS",
    label: "publishes/s accepted, 100 subscribers",
    better: "higher",
    digits: 0,
  },
  {
    scenario: "publish",
    key: "cpuPerThousandPublishes",
    label: "server CPU-s per 1,000 publishes",
    better: "lower",
    digits: 3,
  },
];

/** A scenario's outcome on one server in one run: its figures, or why it failed. */
export type Outcome = Figures | { error: string };

/** Everything one run of the bench measured, as written to the results JSON. */
export interface Results {
  date: string;
  command: string;
  quick: boolean;
  machine: { cpu: string; cores: number; node: string; kernel: string; memoryGb: number };
  servers: { name: string; label: string; about?: string }[];
  /** Set when the bench was stopped before the end: the figures are those of the scenarios that finished. */
  stopped?: string;
  /** Peers left out because they are not installed, and why. */
  skipped?: { label: string; reason: string }[];
  /** The machine's CPU use (%, all cores) over the 3 s before the first run; absent without /proc/stat. */
  cpuBusyBefore?: number;
  runs: {
    loadStart: number[];
    loadEnd: number[];
    outcomes: Record<string, Record<string, Outcome>>;
  }[];
}

/** The middle value (the mean of the two middle ones for an even count); undefined when empty. */
export function median(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** Whether any run ran `scenario` on any server (`--scenarios` may have left it out). */
function ran(results: Results, scenario: string): boolean {
  return results.runs.some((run) => Object.values(run.outcomes).some((outcomes) => scenario in outcomes));
}

function figure(outcome: Outcome | undefined, key: string): number | undefined {
  if (outcome === undefined || "error" in outcome) return undefined;
  return (outcome as Figures)[key];
}

/** The median of `metric` on `server` over the runs where its scenario succeeded. */
export function medianOf(results: Results, server: string, metric: Metric): number | undefined {
  const values = results.runs
    .map((run) => figure(run.outcomes[server]?.[metric.scenario], metric.key))
    .filter((v): v is number => v !== undefined);
  return median(values);
}

/** `ran`: whether the scenario ran at all (a run stopped early never reached some). */
function format(value: number | undefined, digits: number, ran = true): string {
  if (value === undefined) return ran ? "failed" : "not run";
  return value.toLocaleString("en", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** "×0.25" style: Herald's value over the peer's. */
function ratio(herald: number | undefined, peer: number | undefined): string {
  if (herald === undefined || peer === undefined || peer === 0) return "–";
  return `×${(herald / peer).toFixed(herald / peer >= 10 ? 1 : 2)}`;
}

function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}

/** The goals of issues 4 and 12, checked against the medians; a scenario left out (`--scenarios`) has none. */
function goals(results: Results): string[] {
  const get = (server: string, scenario: string, key: string) => {
    const metric = METRICS.find((m) => m.scenario === scenario && m.key === key) as Metric;
    return medianOf(results, server, metric);
  };
  const lines: string[] = [];
  const check = (scenario: string, ok: boolean | undefined, text: string) => {
    if (ran(results, scenario)) lines.push(`- ${ok ? "met" : "NOT met"}: ${text}`);
  };
  const cpu = get("herald", "fanout-10k", "cpuPerMillion");
  check(
    "fanout-10k",
    cpu !== undefined && cpu < 3.5,
    `CPU per million deliveries at N = 10,000 below 3.5 (${format(cpu, 2)})`,
  );
  for (const scenario of ["fanout-1k", "fanout-10k"]) {
    const herald = get("herald", scenario, "p99Ms");
    const plain = get("plain-http", scenario, "p99Ms");
    check(
      scenario,
      herald !== undefined && plain !== undefined && herald <= plain,
      `${scenario}: p99 latency no worse than the plain node:http broadcaster (${format(herald, 2)} ms vs ${format(plain, 2)} ms)`,
    );
  }
  const kb = get("herald", "idle", "kbPerStream");
  check("idle", kb !== undefined && kb <= 10, `idle memory <= 10 KB per stream (${format(kb, 2)} KB)`);
  check("idle", kb !== undefined && kb <= 8, `idle memory <= 8 KB per stream, issue 12 (${format(kb, 2)} KB)`);
  const streams = get("herald", "idle", "streams");
  check(
    "idle",
    streams !== undefined && streams >= 19_000,
    `19,000 concurrent streams in one process (${format(streams, 0)})`,
  );
  const growth = get("herald", "slow", "rssGrowthMb");
  const slowdown = get("herald", "slow", "readerSlowdown");
  check(
    "slow",
    growth !== undefined && growth < 30 && slowdown !== undefined && slowdown < 1.25,
    `slow clients: RSS growth under 30 MB (${format(growth, 1)} MB), readers not slowed (×${format(slowdown, 2)})`,
  );
  const publishes = get("herald", "publish", "publishesPerS");
  check(
    "publish",
    publishes !== undefined && publishes >= 20_000,
    `>= 20,000 publishes/s with 100 subscribers (${format(publishes, 0)})`,
  );
  return lines;
}

/**
 * True when something besides the bench kept the machine busy: over `OTHER_WORK_PERCENT` of its CPU
 * in use in the 3 s before the first run (without /proc/stat: a one-minute load average above 1).
 */
function busy(results: Results): boolean {
  if (results.cpuBusyBefore !== undefined) return results.cpuBusyBefore > OTHER_WORK_PERCENT;
  return (results.runs[0]?.loadStart[0] ?? 0) > 1;
}

/** What says the machine was busy or quiet before the first run. */
function before(results: Results): string {
  if (results.cpuBusyBefore === undefined) return `load average ${results.runs[0]?.loadStart[0]} before it`;
  return `CPU ${results.cpuBusyBefore.toFixed(0)} % busy in the 3 s before it`;
}

/**
 * Results that other benches or people wrote, each in a file of its own next to RESULTS.md, so
 * that a rerun of `npm run bench`, which rewrites RESULTS.md whole, never loses them.
 */
const MORE_RESULTS: { file: string; title: string; source: string }[] = [
  {
    file: "RESULTS-publish.md",
    title: "Publish throughput: batches and single events, on each broker",
    source:
      "from `npm run bench:publish` (issue 12), which `npm run bench` runs last (Herald only: no peer takes batches)",
  },
  {
    file: "RESULTS-redis-batches.md",
    title: "Redis: batches with and without publisher ids",
    source: "from `node bench/redis-batches.mjs` (issue 12): Redis and Node CPU per event, replay, singles after",
  },
  {
    file: "RESULTS-http2-notes.md",
    title: "HTTP/2 beside HTTP/1.1",
    source:
      "from `npm run bench:http2` (issue 10; its own output is [RESULTS-http2.md](RESULTS-http2.md)), with a CPU profile",
  },
  { file: "RESULTS-presence.md", title: "Presence: connect storm", source: "from `node bench/presence.mjs` (issue 9)" },
  {
    file: "RESULTS-replay-memory.md",
    title: "Replay memory: stalled Last-Event-ID replays",
    source: "from `npm run bench:replay-memory` (issue 11)",
  },
  { file: "RESULTS-templates.md", title: "Template selectors", source: "from `node bench/template-selectors.mjs`" },
];

/** Renders `results` as the Markdown of bench/RESULTS.md. */
export function renderMarkdown(results: Results): string {
  const { machine, servers } = results;
  const herald = servers.find((s) => s.name === "herald");
  const peers = servers.filter((s) => s.name !== "herald");
  const n = results.runs.length;
  const header = [
    "metric",
    "better",
    ...servers.map((s) => s.label),
    ...(herald ? peers.map((p) => `Herald ÷ ${p.label}`) : []),
  ];
  const metrics = METRICS.filter((metric) => ran(results, metric.scenario));
  const rows = metrics.map((metric) => {
    const values = servers.map((s) => medianOf(results, s.name, metric));
    const heraldValue = herald ? medianOf(results, "herald", metric) : undefined;
    return [
      metric.label,
      metric.better,
      ...values.map((v, i) =>
        format(
          v,
          metric.digits,
          results.runs.some((run) => run.outcomes[servers[i]?.name ?? ""]?.[metric.scenario] !== undefined),
        ),
      ),
      ...(herald ? peers.map((p) => ratio(heraldValue, medianOf(results, p.name, metric))) : []),
    ];
  });
  const failures = results.runs.flatMap((run, i) =>
    Object.entries(run.outcomes).flatMap(([server, outcomes]) =>
      Object.entries(outcomes).flatMap(([scenario, outcome]) =>
        "error" in outcome ? [`- run ${i + 1}, ${server}, ${scenario}: ${String(outcome.error).split("\n")[0]}`] : [],
      ),
    ),
  );
  const perRun = metrics.map((metric) => [
    metric.label,
    ...servers.map((s) =>
      results.runs
        .map((run) => {
          const outcome = run.outcomes[s.name]?.[metric.scenario];
          return format(figure(outcome, metric.key), metric.digits, outcome !== undefined);
        })
        .join(" / "),
    ),
  ]);
  return [
    "# Benchmark results",
    "",
    `Written by \`${results.command}\` on ${results.date}. How the bench works, and what the figures mean: [README.md](README.md).`,
    "",
    `- Machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGb} GB; Linux ${machine.kernel}; Node.js ${machine.node}.`,
    ...servers.flatMap((s) => (s.about ? [`- ${s.label}: ${s.about}.`] : [])),
    ...(results.skipped ?? []).map((s) => `- ${s.label}: not run: ${s.reason}.`),
    `- ${n === 1 ? "One run" : `${n} runs; each figure is the median`}${results.quick ? " (--quick: smaller scenarios)" : ""}.`,
    ...results.runs.map(
      (run, i) =>
        `- Run ${i + 1}: load average ${run.loadStart.join(" ")} at the start, ${run.loadEnd.join(" ")} at the end.`,
    ),
    "  (1, 5 and 15 minutes. After the start of run 1 they include the bench's own server, workers and publisher.)",
    ...(results.cpuBusyBefore !== undefined
      ? [
          `- CPU in use in the 3 s before run 1: ${results.cpuBusyBefore.toFixed(1)} % of all cores (\`/proc/stat\`). This, not the`,
          "  load average (which still counts work that ended minutes ago), says whether other work was running.",
        ]
      : []),
    ...(results.stopped
      ? [`- **Stopped before the end** (${results.stopped}): a figure is the median of the runs that reached it.`]
      : []),
    ...(busy(results)
      ? [
          `- **This machine was shared with other work during the run** (${before(results)}`,
          "  started): rates and latencies are noisy; compare servers within the run, and re-run on a quiet machine to quote.",
        ]
      : []),
    "- The load generator and the publisher run on the same machine as the server: on few cores they take",
    "  CPU from it. CPU-seconds are those of the server's own processes (`/proc/<pid>/stat`), which hold",
    "  when the machine is busy; rates and latencies do not.",
    "",
    table(header, rows),
    "",
    "## Issue 4 and 12 goals (Herald, medians)",
    "",
    ...goals(results),
    "",
    "## Every run",
    "",
    table(["metric", ...servers.map((s) => s.label)], perRun),
    "",
    ...(failures.length > 0 ? ["## Failures", "", ...failures, ""] : []),
    "## More results",
    "",
    "Written by hand from other benches, in files of their own that `npm run bench` leaves alone:",
    "",
    ...MORE_RESULTS.map(({ file, title, source }) => `- [${title}](${file}), ${source}.`),
    "",
  ].join("\n");
}
