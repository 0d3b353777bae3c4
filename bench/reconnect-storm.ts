/**
 * `npm run bench:storm [-- options]`: a reconnect storm, measured. Herald holds N subscribers
 * while events are published at a steady rate; then a node dies (SIGKILL) and every one of its
 * subscribers comes back, after its `retry:` delay, with its Last-Event-ID.
 *   --broker sqlite      one Herald on a SQLite file, killed and restarted on the same file and port
 *   --broker redis       two Herald nodes on one Redis, subscribers split over both, one node killed:
 *                        its clients move to the survivor (each client's port list rotates on a refused
 *                        connection, as a load balancer would)
 *   --subscribers <n>    default 10000          --workers <n>     client processes (default 4)
 *   --rate <n>           events/s (default 2)   --retry-ms <ms>   RETRY_MS (default 2000)
 *   --jitter-ms <ms>     RETRY_JITTER_MS (default 0; "unset" leaves Herald's default, half of RETRY_MS)
 *   --backlog <n>        LISTEN_BACKLOG (default: Herald's, 4096; 511 is Node's own default)
 *   --down-ms <ms>       sqlite: from the kill to the restart (default 1000, a supervisor's restart delay)
 *   --max-connections <n>  MAX_CONNECTIONS (default 12000)
 *   --warmup-s <s> / --tail-s <s>  publishing before the kill / after every client is back (default 3 / 3)
 *   --redis-url <url>    default redis://127.0.0.1:6379
 *   --json <file>        appends the run's figures as one JSON line
 *   --node-args=<args>   node options for the Herald that takes the storm (the restarted one, or the
 *                        survivor), e.g. --node-args="--cpu-prof --cpu-prof-dir=/tmp/prof"
 * Checks, per subscriber, that it got every event exactly once and in order, across the restart.
 */
import { type ChildProcess, fork } from "node:child_process";
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import { freePort } from "./server-process.js";
import { HeraldProcess, killAllHeralds } from "./storm-herald.js";
import { monoMs, type StormCommand, type StormMessage, type StormReport } from "./storm-protocol.js";
import { StormPublisher } from "./storm-publisher.js";

const WORKER = fileURLToPath(new URL("./storm-worker.js", import.meta.url));
/** Connections being opened at once, over all workers, at the start (below the listen backlog of 511). */
const OPENING_AT_ONCE = 400;
const START_TIMEOUT_MS = 30_000;
const OPEN_TIMEOUT_MS = 180_000;
/** The longest wait for every client to be back, and then for every event to reach every client. */
const RECOVERY_TIMEOUT_MS = 180_000;
/** The whole bench, whatever happens, ends within this. */
const HARD_LIMIT_MS = 15 * 60_000;
const SAMPLE_MS = 200;
/** CPU % is measured over windows this long: a shorter one is mostly noise. */
const CPU_WINDOW_MS = 1_000;

const { values: args } = parseArgs({
  options: {
    broker: { type: "string", default: "sqlite" },
    subscribers: { type: "string", default: "10000" },
    workers: { type: "string", default: "4" },
    rate: { type: "string", default: "2" },
    "retry-ms": { type: "string", default: "2000" },
    "jitter-ms": { type: "string", default: "0" },
    backlog: { type: "string" },
    "down-ms": { type: "string", default: "1000" },
    "max-connections": { type: "string", default: "12000" },
    "warmup-s": { type: "string", default: "3" },
    "tail-s": { type: "string", default: "3" },
    "redis-url": { type: "string", default: "redis://127.0.0.1:6379" },
    json: { type: "string" },
    "node-args": { type: "string" },
  },
});
const broker = args.broker;
if (broker !== "sqlite" && broker !== "redis") throw new Error(`--broker ${broker}: use sqlite or redis`);
const subscribers = Number(args.subscribers);
const rate = Number(args.rate);
const retryMs = Number(args["retry-ms"]);
const jitter = args["jitter-ms"];
const downMs = Number(args["down-ms"]);
const nodeArgs = args["node-args"]?.split(" ").filter((a) => a !== "") ?? [];

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const load = () => loadavg().map((l) => Number(l.toFixed(2)));

/** The storm workers, seen from here. */
class StormWorkers {
  readonly #workers: ChildProcess[];
  readonly #complete: number[];
  readonly #waiting = new Map<number, (m: StormMessage) => void>();
  #seq = 0;
  #onProgress: () => void = () => {};

  constructor(count: number) {
    this.#workers = Array.from({ length: count }, () =>
      fork(WORKER, [], { stdio: ["ignore", "inherit", "inherit", "ipc"] }),
    );
    this.#complete = this.#workers.map(() => 0);
    this.#workers.forEach((worker, i) => {
      worker.on("message", (message: StormMessage) => {
        if (message.type === "progress") {
          this.#complete[i] = message.complete;
          this.#onProgress();
          return;
        }
        this.#waiting.get(message.seq)?.(message);
        this.#waiting.delete(message.seq);
      });
    });
  }

  /** Events 1 to this have reached every client. */
  complete(): number {
    return Math.min(...this.#complete);
  }

  /** Resolves once events 1 to `n` have reached every client; rejects after `timeoutMs`. */
  until(n: number, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#onProgress = () => {};
        reject(new Error(`after ${timeoutMs} ms, only events 1 to ${this.complete()} of ${n} reached every client`));
      }, timeoutMs);
      this.#onProgress = () => {
        if (this.complete() < n) return;
        clearTimeout(timer);
        this.#onProgress = () => {};
        resolve();
      };
      this.#onProgress();
    });
  }

  /** Opens one client per entry of `ports` (its port list), spread evenly, each worker from its own address. */
  async open(ports: number[][]): Promise<void> {
    const n = this.#workers.length;
    await Promise.all(
      this.#workers.map((_, i) =>
        this.#ask(i, {
          cmd: "open",
          ports: ports.filter((_, c) => c % n === i),
          localAddress: `127.0.0.${2 + i}`,
          atOnce: Math.ceil(OPENING_AT_ONCE / n),
          timeoutMs: OPEN_TIMEOUT_MS,
        }),
      ),
    );
  }

  async reports(): Promise<StormReport[]> {
    const answers = await Promise.all(this.#workers.map((_, i) => this.#ask(i, { cmd: "report" })));
    return answers.map((m) => (m as { report: StormReport }).report);
  }

  kill(): void {
    for (const worker of this.#workers) if (worker.exitCode === null) worker.kill("SIGKILL");
  }

  #ask(
    i: number,
    command: Omit<Extract<StormCommand, { cmd: "open" }>, "seq"> | { cmd: "report" },
  ): Promise<StormMessage> {
    const seq = ++this.#seq;
    return new Promise((resolve, reject) => {
      this.#waiting.set(seq, (message) => {
        if (message.type === "done" && !message.ok) reject(new Error(message.error));
        else resolve(message);
      });
      this.#workers[i]?.send({ ...command, seq });
    });
  }
}

/** CPU and RSS of one process, sampled every `SAMPLE_MS`. */
class Sampler {
  readonly samples: { at: number; cpuS: number; waitS: number; rss: number }[] = [];
  readonly #timer: NodeJS.Timeout;

  constructor(herald: HeraldProcess) {
    const sample = () => {
      const cpuS = herald.cpuSeconds();
      const rss = herald.rssBytes();
      const waitS = herald.waitSeconds();
      if (cpuS !== undefined && rss !== undefined && waitS !== undefined) {
        this.samples.push({ at: monoMs(), cpuS, waitS, rss });
      }
    };
    sample();
    this.#timer = setInterval(sample, SAMPLE_MS);
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /**
   * Peak CPU (% of one core, over `CPU_WINDOW_MS` windows), mean CPU and peak RSS between two times,
   * and the share of that time the main thread was runnable but waiting for a core (a busy machine).
   */
  between(from: number, to: number): { peakCpu: number; meanCpu: number; meanWait: number; peakRssMb: number } {
    const inside = this.samples.filter((s) => s.at >= from - CPU_WINDOW_MS && s.at <= to);
    let peakCpu = 0;
    let peakRss = 0;
    for (let i = 0, j = 0; i < inside.length; i++) {
      const s = inside[i] as (typeof inside)[number];
      if (s.at >= from) peakRss = Math.max(peakRss, s.rss);
      while (j < i && s.at - (inside[j + 1] as (typeof inside)[number]).at >= CPU_WINDOW_MS) j++;
      const w = inside[j] as (typeof inside)[number];
      if (s.at >= from && s.at - w.at >= CPU_WINDOW_MS * 0.8) {
        peakCpu = Math.max(peakCpu, ((s.cpuS - w.cpuS) * 100_000) / (s.at - w.at));
      }
    }
    const first = inside.find((s) => s.at >= from);
    const last = inside.at(-1);
    const span = first && last && last.at > first.at ? last.at - first.at : 0;
    const meanCpu = first && last && span > 0 ? ((last.cpuS - first.cpuS) * 100_000) / span : 0;
    const meanWait = first && last && span > 0 ? ((last.waitS - first.waitS) * 100_000) / span : 0;
    return {
      peakCpu: Math.round(peakCpu),
      meanCpu: Math.round(meanCpu),
      meanWait: Math.round(meanWait),
      peakRssMb: Math.round(peakRss / 2 ** 20),
    };
  }
}

/** The kernel's counters of SYNs and handshakes dropped because a listen queue was full (system-wide). */
function listenDrops(): { overflows: number; drops: number } {
  const lines = readFileSync("/proc/net/netstat", "utf8").split("\n");
  const names = lines.find((l) => l.startsWith("TcpExt:"))?.split(" ") ?? [];
  const values = lines.filter((l) => l.startsWith("TcpExt:"))[1]?.split(" ") ?? [];
  const get = (name: string) => Number(values[names.indexOf(name)] ?? 0);
  return { overflows: get("ListenOverflows"), drops: get("ListenDrops") };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

function merge(tables: Record<string, number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const table of tables) for (const [k, v] of Object.entries(table)) out[k] = (out[k] ?? 0) + v;
  return out;
}

const s = (ms: number) => Number((ms / 1000).toFixed(2));

async function main(): Promise<void> {
  const workers = new StormWorkers(Number(args.workers));
  const heralds: HeraldProcess[] = [];
  const cleanUp = () => {
    workers.kill();
    killAllHeralds();
  };
  process.on("exit", cleanUp);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      console.error(`storm: ${signal}, stopping every process it started`);
      process.exit(130);
    });
  }
  setTimeout(() => {
    console.error(`storm: still running after ${HARD_LIMIT_MS / 60_000} minutes: giving up`);
    process.exit(1);
  }, HARD_LIMIT_MS).unref();

  const dir = mkdtempSync(join(tmpdir(), "herald-storm-"));
  const prefix = `storm-${process.pid}-${Date.now()}`;
  const env: Record<string, string> = {
    LOG_LEVEL: "warn",
    RETRY_MS: String(retryMs),
    ...(jitter === "unset" ? {} : { RETRY_JITTER_MS: jitter }),
    ...(args.backlog === undefined ? {} : { LISTEN_BACKLOG: args.backlog }),
    MAX_CONNECTIONS: args["max-connections"],
    // The subscribers come from four loopback addresses and the publisher from one: per-client
    // limits meant for the open internet would refuse most of them.
    MAX_CONNECTIONS_PER_IP: "0",
    PUBLISH_RATE_LIMIT: "0",
    // Every event of the run stays in history: a resume must never meet a trimmed history here.
    HISTORY_SIZE: "1000000",
    ...(broker === "sqlite"
      ? { BROKER: "sqlite", DATABASE_PATH: join(dir, "herald.db") }
      : { BROKER: "redis", REDIS_URL: args["redis-url"], REDIS_PREFIX: prefix }),
  };
  const loadStart = load();
  try {
    const ports = broker === "sqlite" ? [await freePort()] : [await freePort(), await freePort()];
    // The storm lands on the restarted process (sqlite) or on the second node (redis).
    for (const [i, port] of ports.entries()) {
      heralds.push(new HeraldProcess(port, env, START_TIMEOUT_MS, i === 1 ? nodeArgs : []));
    }
    await Promise.all(heralds.map((h) => h.ready));
    // Redis: clients alternate between the nodes; each lists the other node second.
    const clientPorts = Array.from({ length: subscribers }, (_, c) =>
      ports.length === 1 ? ports : [ports[c % 2] as number, ports[(c + 1) % 2] as number],
    );
    const openStart = monoMs();
    await workers.open(clientPorts);
    const openS = s(monoMs() - openStart);
    console.log(`storm: ${subscribers} subscribers open in ${openS} s (load ${load().join(" ")})`);

    const victim = heralds[0] as HeraldProcess;
    const before = new Sampler(victim);
    const survivor = heralds[1];
    const survivorSampler = survivor && new Sampler(survivor);
    const publisher = new StormPublisher(ports, rate);
    publisher.start();
    const warmupStart = monoMs();
    await sleep(Number(args["warmup-s"]) * 1000);
    await workers.until(publisher.acked, 10_000);

    const steady = before.between(warmupStart + 1_000, monoMs());
    const dropsBefore = listenDrops();
    const killAt = monoMs();
    const sentBeforeKill = publisher.sent;
    await victim.kill();
    before.stop();
    console.log(`storm: killed Herald on ${victim.port} after event s${sentBeforeKill}`);

    let readyAt: number;
    let restartAt: number | undefined;
    let sampler: Sampler;
    let target: HeraldProcess;
    if (broker === "sqlite") {
      await sleep(downMs);
      target = new HeraldProcess(victim.port, env, START_TIMEOUT_MS, nodeArgs);
      heralds.push(target);
      restartAt = target.spawnedAt;
      sampler = new Sampler(target);
      readyAt = await target.ready;
      console.log(`storm: restarted, listening ${s(readyAt - restartAt)} s after the spawn`);
    } else {
      target = survivor as HeraldProcess;
      sampler = survivorSampler as Sampler;
      readyAt = killAt;
    }
    // Back means: holding every event that was due when service was back (the outage's events),
    // and at least one event first sent after the kill, which the dead node cannot have delivered.
    const mark = Math.max(publisher.dueBy(readyAt), sentBeforeKill + 1);
    await workers.until(mark, RECOVERY_TIMEOUT_MS).catch(async (err: Error) => {
      const reports = await workers.reports();
      console.error(
        JSON.stringify(
          reports.map(({ completeAt: _, reopenedAt: __, ...r }) => r),
          null,
          2,
        ),
      );
      throw err;
    });
    await sleep(Number(args["tail-s"]) * 1000);
    const published = await publisher.stop();
    await workers.until(published, RECOVERY_TIMEOUT_MS);
    const endAt = monoMs();
    sampler.stop();
    survivorSampler?.stop();
    const dropsAfter = listenDrops();
    const reports = await workers.reports();

    const backAt = Math.max(...reports.map((r) => r.completeAt[mark] ?? Number.POSITIVE_INFINITY));
    const reopened = reports.flatMap((r) => r.reopenedAt.map((at) => at - killAt)).sort((a, b) => a - b);
    const storm = sampler.between(restartAt ?? killAt, backAt + 1_000);
    const figures = {
      date: new Date().toISOString(),
      command: `npm run bench:storm -- ${process.argv.slice(2).join(" ")}`.trim(),
      machine: `${cpus().length} × ${cpus()[0]?.model ?? "?"}, Node ${process.version}`,
      loadStart,
      loadEnd: load(),
      broker,
      subscribers,
      workers: Number(args.workers),
      ratePerS: rate,
      retryMs,
      jitterMs: jitter === "unset" ? `unset (${Math.floor(retryMs / 2)})` : Number(jitter),
      downMs: broker === "sqlite" ? downMs : undefined,
      openS,
      published,
      /** Events due between the kill and the restart's listen: none of them could be stored meanwhile. */
      publishedDuringOutage: broker === "sqlite" ? publisher.dueBy(readyAt) - sentBeforeKill : undefined,
      publishFailures: publisher.failures,
      publishDuplicates: publisher.duplicates,
      mark,
      restartToListeningS: restartAt === undefined ? undefined : s(readyAt - restartAt),
      /** From the restart (sqlite: the new process is spawned; redis: the kill) until the last client holds every event due then. */
      restartToAllBackS: s(backAt - (restartAt ?? killAt)),
      killToAllBackS: s(backAt - killAt),
      markAcknowledgedAfterRestartS: s((publisher.ackAt[mark] ?? 0) - (restartAt ?? killAt)),
      reopened: reopened.length,
      reopenedFromKillS: {
        p50: s(percentile(reopened, 50)),
        p90: s(percentile(reopened, 90)),
        p99: s(percentile(reopened, 99)),
        max: s(reopened.at(-1) ?? 0),
      },
      steadyCpuPercent: steady.meanCpu,
      steadyRssMb: steady.peakRssMb,
      stormPeakCpuPercent: storm.peakCpu,
      stormMeanCpuPercent: storm.meanCpu,
      /** Of the storm's wall time, the share Herald's main thread was ready to run but had no core. */
      stormWaitingForCpuPercent: storm.meanWait,
      stormPeakRssMb: storm.peakRssMb,
      refused: merge(reports.map((r) => r.refused)),
      failedAttempts: merge(reports.map((r) => r.failed)),
      listenQueueOverflows: dropsAfter.overflows - dropsBefore.overflows,
      listenDrops: dropsAfter.drops - dropsBefore.drops,
      dropped: reports.reduce((a, r) => a + r.dropped, 0),
      lost: reports.reduce((a, r) => a + r.lost, 0),
      duplicated: reports.reduce((a, r) => a + r.duplicated, 0),
      resets: reports.reduce((a, r) => a + r.resets, 0),
      minReceived: Math.min(...reports.map((r) => r.minReceived)),
      maxReceived: Math.max(...reports.map((r) => r.maxReceived)),
      everyClientGotEveryEventOnce: false,
      firstError: reports.find((r) => r.firstError !== undefined)?.firstError,
      heraldLog: target.log.slice(-1_000) || undefined,
      totalS: s(endAt - killAt),
    };
    figures.everyClientGotEveryEventOnce =
      figures.lost === 0 &&
      figures.duplicated === 0 &&
      figures.resets === 0 &&
      figures.minReceived === published &&
      figures.maxReceived === published;
    console.log(JSON.stringify(figures, null, 2));
    if (args.json) appendFileSync(args.json, `${JSON.stringify(figures)}\n`);
    if (!figures.everyClientGotEveryEventOnce) process.exitCode = 1;
    workers.kill();
    // Gracefully, so that a --cpu-prof profile is written.
    await target.stop(10_000);
  } finally {
    workers.kill();
    killAllHeralds();
    rmSync(dir, { recursive: true, force: true });
    if (broker === "redis") {
      const redis = new Redis(args["redis-url"], { lazyConnect: true, maxRetriesPerRequest: 1 });
      try {
        await redis.connect();
        const keys = await redis.keys(`${prefix}:*`);
        if (keys.length > 0) await redis.del(...keys);
      } catch (err) {
        console.error(`storm: could not delete the run's Redis keys (${prefix}:*): ${(err as Error).message}`);
      } finally {
        redis.disconnect();
      }
    }
  }
}

main().then(
  () => process.exit(),
  (err: Error) => {
    console.error(`storm: ${err.message}`);
    process.exit(1);
  },
);
