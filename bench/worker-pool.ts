import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Histogram } from "./histogram.js";
import type { ClientKind, Command, IdScheme, WorkerMessage, WorkerReport } from "./protocol.js";

const WORKER = fileURLToPath(new URL("./load-worker.js", import.meta.url));
/**
 * Connections in progress at once, over all workers: below Node's default listen backlog (511),
 * past which the kernel drops SYNs and clients wait a second or more to retry.
 */
const CONNECTING_AT_ONCE = 400;

/** Distributive Omit, so each command keeps its own fields. */
type CommandBody = Command extends infer C ? (C extends Command ? Omit<C, "seq"> : never) : never;

/** The reports of every worker, summed. */
export interface PoolReport extends Omit<WorkerReport, "latency"> {
  latency: Histogram;
}

/**
 * The load workers, seen from the coordinator: spreads connections over them, tracks how far the
 * slowest reader has got (for closed-loop publishing), and merges their reports.
 */
export class WorkerPool {
  readonly #workers: ChildProcess[];
  readonly #completed: number[];
  readonly #waiting = new Map<number, { resolve: (m: WorkerMessage) => void; reject: (e: Error) => void }>();
  #withReaders: boolean[];
  #seq = 0;
  /** Called whenever some worker reports progress. */
  onProgress: () => void = () => {};
  /** How the server under test numbers its events: set before its streams connect. */
  ids: IdScheme = "sequence";

  constructor(count: number) {
    this.#workers = Array.from({ length: count }, () =>
      fork(WORKER, [], { stdio: ["ignore", "inherit", "inherit", "ipc"] }),
    );
    this.#completed = this.#workers.map(() => 0);
    this.#withReaders = this.#workers.map(() => false);
    this.#workers.forEach((worker, i) => {
      worker.on("message", (message: WorkerMessage) => {
        if (message.type === "progress") {
          this.#completed[i] = message.completed;
          this.onProgress();
          return;
        }
        const waiter = this.#waiting.get(message.seq);
        this.#waiting.delete(message.seq);
        waiter?.resolve(message);
      });
      worker.once("exit", (code, signal) => {
        for (const waiter of this.#waiting.values())
          waiter.reject(new Error(`a load worker exited (${code ?? signal})`));
        this.#waiting.clear();
      });
    });
  }

  get size(): number {
    return this.#workers.length;
  }

  /** Events that every reader, in every worker, has received. */
  completed(): number {
    let min = Number.POSITIVE_INFINITY;
    for (let i = 0; i < this.#workers.length; i++) {
      if (this.#withReaders[i]) min = Math.min(min, this.#completed[i] ?? 0);
    }
    return min === Number.POSITIVE_INFINITY ? 0 : min;
  }

  /**
   * Opens `count` streams on `path`, spread evenly; each worker connects from its own loopback
   * address. `after`: events published so far, all of which every reader already has.
   */
  async connect(
    port: number,
    path: string,
    count: number,
    kind: ClientKind,
    timeoutMs: number,
    after = 0,
  ): Promise<void> {
    const n = this.#workers.length;
    await Promise.all(
      this.#workers.map((_, i) => {
        const share = Math.floor(count / n) + (i < count % n ? 1 : 0);
        if (kind === "reader" && share > 0) this.#withReaders[i] = true;
        return this.#ask(i, {
          cmd: "connect",
          port,
          path,
          count: share,
          kind,
          ids: this.ids,
          localAddress: `127.0.0.${2 + i}`,
          timeoutMs,
          after,
          atOnce: Math.ceil(CONNECTING_AT_ONCE / n),
        });
      }),
    );
  }

  /** Starts a measured phase on every worker; `latency` records publish → deliver times. */
  async phase(latency: boolean): Promise<void> {
    await this.#all({ cmd: "phase", latency });
  }

  async report(): Promise<PoolReport> {
    const reports = (await this.#all({ cmd: "report" })).map((m) => (m as { report: WorkerReport }).report);
    const latency = new Histogram();
    for (const r of reports) latency.merge(Histogram.fromJSON(r.latency));
    const withReaders = reports.filter((r) => r.readers > 0);
    return {
      readers: sum(reports.map((r) => r.readers)),
      stalled: sum(reports.map((r) => r.stalled)),
      events: sum(reports.map((r) => r.events)),
      minEvents: withReaders.length === 0 ? 0 : Math.min(...withReaders.map((r) => r.minEvents)),
      maxEvents: Math.max(0, ...reports.map((r) => r.maxEvents)),
      outOfOrder: sum(reports.map((r) => r.outOfOrder)),
      firstError: reports.find((r) => r.firstError !== undefined)?.firstError,
      readersClosed: sum(reports.map((r) => r.readersClosed)),
      latency,
    };
  }

  /** Closes every connection and forgets them, ready for the next server. */
  async closeAll(): Promise<void> {
    await this.#all({ cmd: "close" });
    this.#completed.fill(0);
    this.#withReaders = this.#workers.map(() => false);
  }

  /** Kills the workers at once (also safe in an exit handler). */
  kill(): void {
    for (const worker of this.#workers) if (worker.exitCode === null) worker.kill("SIGKILL");
  }

  async #all(command: CommandBody): Promise<WorkerMessage[]> {
    return Promise.all(this.#workers.map((_, i) => this.#ask(i, command)));
  }

  #ask(i: number, command: CommandBody): Promise<WorkerMessage> {
    const seq = ++this.#seq;
    return new Promise((resolve, reject) => {
      this.#waiting.set(seq, {
        resolve: (message) => {
          if (message.type === "done" && !message.ok) reject(new Error(message.error));
          else resolve(message);
        },
        reject,
      });
      this.#workers[i]?.send({ ...command, seq });
    });
  }
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}
