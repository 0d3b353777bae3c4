import { Pool } from "undici";
import { monoMs, STORM_TOPIC } from "./storm-protocol.js";

/** Between two tries of the same event while no node takes it. */
const RETRY_PAUSE_MS = 100;
/** A publish that has no answer this long counts as failed and is tried again (same id: stored once). */
const REQUEST_TIMEOUT_MS = 10_000;

/**
 * Publishes `s1`, `s2`, … at a steady rate, one at a time, in order: event n is due at
 * `start + (n - 1) / rate` and is sent once n - 1 is acknowledged. A failed publish (no node
 * listening, a 503, no answer) is sent again with the same id until a node answers 201, moving
 * to the next port on a connection error, so every event is stored exactly once (Herald answers a
 * repeated id with the original event, `duplicate: true`). Events fall behind their due time
 * while nothing accepts them, and are sent back to back once something does.
 */
export class StormPublisher {
  readonly #ports: readonly number[];
  readonly #rate: number;
  readonly #pools = new Map<number, Pool>();
  #port = 0;
  #start = 0;
  #stopped = false;
  #done: Promise<void> = Promise.resolve();
  /** Events acknowledged (they are acknowledged in order). */
  acked = 0;
  /** Events whose first try has been sent. */
  sent = 0;
  /** `ackAt[n]`: when event n was acknowledged (`monoMs()`). */
  readonly ackAt: number[] = [0];
  /** Failed tries, by `<status> <code>` or network error code. */
  readonly failures: Record<string, number> = {};
  /** Tries answered `duplicate: true`: the event had been stored by a try whose answer was lost. */
  duplicates = 0;

  constructor(ports: readonly number[], ratePerS: number) {
    this.#ports = ports;
    this.#rate = ratePerS;
  }

  /** Events due by `at` (a `monoMs()` time). */
  dueBy(at: number): number {
    return Math.max(0, Math.floor(((at - this.#start) * this.#rate) / 1000) + 1);
  }

  start(): void {
    this.#start = monoMs();
    this.#done = this.#run();
  }

  /** Stops after the event being published now; resolves with the number of events published. */
  async stop(): Promise<number> {
    this.#stopped = true;
    await this.#done;
    await Promise.all([...this.#pools.values()].map((pool) => pool.destroy()));
    return this.acked;
  }

  async #run(): Promise<void> {
    for (let n = 1; !this.#stopped; n++) {
      const wait = this.#start + ((n - 1) * 1000) / this.#rate - monoMs();
      if (wait > 0) await sleep(wait);
      if (this.#stopped) return;
      this.sent = n;
      while (!(await this.#try(n))) await sleep(RETRY_PAUSE_MS);
      this.acked = n;
      this.ackAt[n] = monoMs();
    }
  }

  #pool(port: number): Pool {
    let pool = this.#pools.get(port);
    if (pool === undefined) {
      pool = new Pool(`http://127.0.0.1:${port}`, {
        connections: 1,
        headersTimeout: REQUEST_TIMEOUT_MS,
        bodyTimeout: REQUEST_TIMEOUT_MS,
      });
      this.#pools.set(port, pool);
    }
    return pool;
  }

  async #try(n: number): Promise<boolean> {
    const port = this.#ports[this.#port] as number;
    try {
      const res = await this.#pool(port).request({
        path: "/events",
        method: "POST",
        headers: { "content-type": "application/json" },
        body: `{"topic":"${STORM_TOPIC}","id":"s${n}","data":"${n}"}`,
      });
      const body = (await res.body.json()) as { code?: string; duplicate?: boolean };
      if (res.statusCode === 201) {
        if (body.duplicate === true) this.duplicates++;
        return true;
      }
      count(this.failures, `${res.statusCode} ${body.code ?? ""}`.trim());
      return false;
    } catch (err) {
      count(this.failures, (err as NodeJS.ErrnoException).code ?? (err as Error).message);
      this.#port = (this.#port + 1) % this.#ports.length;
      return false;
    }
  }
}

function count(table: Record<string, number>, key: string): void {
  table[key] = (table[key] ?? 0) + 1;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
