/** Messages between the bench coordinator (`run.ts`) and its load workers (`load-worker.ts`). */

/**
 * How a server numbers its events. `sequence`: each id ends in 1, 2, 3, … (Herald's `k2x9q1-42`,
 * the Node peers' `42`), and a reader checks each is the next. `time:tag`: nchan's
 * `<unix seconds>:<n-th message of that second>`, increasing but not consecutive, so a reader
 * checks each is above the last; with the count of events that is the same check.
 */
export type IdScheme = "sequence" | "time:tag";

/** `reader`: reads and checks every event. `stalled`: reads the response head, then never reads again. */
export type ClientKind = "reader" | "stalled";

/** Coordinator → worker. Every command is answered with a `done` carrying the same `seq`. */
export type Command =
  | {
      seq: number;
      cmd: "connect";
      port: number;
      path: string;
      count: number;
      kind: ClientKind;
      ids: IdScheme;
      localAddress: string;
      timeoutMs: number;
      /** Events published before these connections: their readers expect the next one. */
      after: number;
      /** Connections to have in progress at once. */
      atOnce: number;
    }
  /** Starts a measured phase: clears the latency histogram; `latency` turns recording on. */
  | { seq: number; cmd: "phase"; latency: boolean }
  | { seq: number; cmd: "report" }
  | { seq: number; cmd: "close" };

/** What a worker saw, answered to `report`. */
export interface WorkerReport {
  readers: number;
  stalled: number;
  /** Events counted over all readers since the start. */
  events: number;
  /** Fewest and most events any one reader has received. */
  minEvents: number;
  maxEvents: number;
  /** Events whose id was not the one expected next (a gap, a repeat, or out of order). */
  outOfOrder: number;
  firstError: string | undefined;
  /** Readers whose stream was closed by the server. */
  readersClosed: number;
  latency: { buckets: [number, number][]; max: number };
}

/** Worker → coordinator. */
export type WorkerMessage =
  | { type: "done"; seq: number; ok: boolean; error?: string; report?: WorkerReport; opened?: number }
  /** Every reader of this worker has received at least `completed` events. */
  | { type: "progress"; completed: number };
