import { Pool } from "undici";

/** The topic every bench stream subscribes to and every publish goes to. */
export const TOPIC = "bench";

/** Microseconds on the system-wide monotonic clock: comparable between the bench's processes. */
export function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** How a publishing loop went, in ms from its first publish. */
export interface LoopTimes {
  /** Events published: `count`, or fewer if the time budget ran out first. */
  count: number;
  /** Until the last publish was acknowledged. */
  acknowledgedMs: number;
  /** Until every reader had every event. */
  deliveredMs: number;
}

/** Options shared by both loops. */
export interface LoopOptions {
  count: number;
  /** Characters of padding after the timestamp in `data`: sets the event's size. */
  padding: number;
  /** Events every reader has received so far (from the workers' progress). */
  delivered: () => number;
  /** Register a callback for each progress report. */
  onProgress: (callback: () => void) => void;
  timeoutMs: number;
}

/**
 * Publishes to one server over HTTP with undici, as `POST /events` with JSON
 * `{"topic":"bench","data":"<µs timestamp> xxx…"}`, or with `rawPath` (nchan) as
 * `POST <rawPath>?topic=bench` with the data itself as the body. Every loop is bounded in count and in time.
 */
export class Publisher {
  readonly #pool: Pool;
  readonly #rawPath: string | undefined;
  /** Events published by this publisher so far: readers count from here. */
  published = 0;

  constructor(port: number, connections: number, rawPath?: string) {
    this.#pool = new Pool(`http://127.0.0.1:${port}`, { connections, pipelining: 1 });
    this.#rawPath = rawPath;
  }

  async close(): Promise<void> {
    await this.#pool.destroy();
  }

  /**
   * Closed loop: as fast as the server takes them, with at most `inFlight` requests open and at
   * most `window` events published that some reader has not received yet. With `budgetMs`, stops
   * publishing after that long (then waits for what was sent), so a slow server takes no longer.
   */
  closedLoop(options: LoopOptions & { inFlight: number; window: number; budgetMs?: number }): Promise<LoopTimes> {
    const { window, inFlight, delivered, onProgress, budgetMs } = options;
    const base = this.published;
    const pad = "x".repeat(options.padding);
    return this.#loop(options, (state) => {
      if (budgetMs !== undefined) {
        const budget = setTimeout(() => {
          state.target = Math.min(state.target, state.sent);
          state.check();
        }, budgetMs);
        state.onOver = () => clearTimeout(budget);
      }
      const pump = () => {
        while (
          state.sent < state.target &&
          state.open < inFlight &&
          state.sent - (delivered() - base) < window &&
          !state.over
        ) {
          state.publish(pad).then(pump, state.fail);
        }
        state.check();
      };
      onProgress(pump);
      pump();
    });
  }

  /** Open loop: `count` events at `ratePerS`, each stamped when it is sent, whatever the answers. */
  fixedRate(options: LoopOptions & { ratePerS: number }): Promise<LoopTimes> {
    const { count, ratePerS, onProgress } = options;
    const pad = "x".repeat(options.padding);
    return this.#loop(options, (state) => {
      const start = performance.now();
      const tick = () => {
        const now = performance.now();
        while (state.sent < count && start + (state.sent * 1000) / ratePerS <= now && !state.over) {
          if (state.open > 10_000) state.fail(new Error("the server fell more than 10,000 publishes behind"));
          else state.publish(pad).then(state.check, state.fail);
        }
        if (state.sent < count && !state.over) setTimeout(tick, start + (state.sent * 1000) / ratePerS - now);
      };
      onProgress(state.check);
      tick();
    });
  }

  #loop(options: LoopOptions, drive: (state: LoopState) => void): Promise<LoopTimes> {
    const { count, delivered, timeoutMs } = options;
    const base = this.published;
    return new Promise((resolve, reject) => {
      const started = performance.now();
      let lastAckAt = 0;
      const timer = setTimeout(() => {
        state.fail(
          new Error(
            `timed out after ${timeoutMs} ms: ${state.acked} of ${state.target} publishes acknowledged, ${delivered() - base} delivered to every reader`,
          ),
        );
      }, timeoutMs);
      const state: LoopState = {
        target: count,
        sent: 0,
        open: 0,
        acked: 0,
        over: false,
        publish: async (pad) => {
          state.sent++;
          state.open++;
          this.published++;
          const data = `${nowUs()} ${pad}`;
          const res = await this.#pool.request(
            this.#rawPath === undefined
              ? {
                  path: "/events",
                  method: "POST",
                  headers: { "content-type": "application/json" },
                  body: `{"topic":"${TOPIC}","data":"${data}"}`,
                }
              : {
                  path: `${this.#rawPath}?topic=${TOPIC}`,
                  method: "POST",
                  headers: { "content-type": "text/plain" },
                  body: data,
                },
          );
          const text = await res.body.text();
          if (res.statusCode < 200 || res.statusCode > 299)
            throw new Error(`publish answered ${res.statusCode}: ${text}`);
          state.open--;
          state.acked++;
          lastAckAt = performance.now();
        },
        check: () => {
          const { target } = state;
          if (state.over || state.acked < target || delivered() - base < target) return;
          state.over = true;
          clearTimeout(timer);
          state.onOver();
          resolve({ count: target, acknowledgedMs: lastAckAt - started, deliveredMs: performance.now() - started });
        },
        fail: (err: unknown) => {
          if (state.over) return;
          state.over = true;
          clearTimeout(timer);
          state.onOver();
          reject(err);
        },
        onOver: () => {},
      };
      drive(state);
    });
  }
}

interface LoopState {
  /** Events to publish: `count`, lowered when a time budget runs out. */
  target: number;
  sent: number;
  open: number;
  acked: number;
  over: boolean;
  publish(pad: string): Promise<void>;
  check(): void;
  fail(err: unknown): void;
  /** Called once when the loop is over, either way. */
  onOver(): void;
}
