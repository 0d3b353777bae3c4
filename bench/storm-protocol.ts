/** Messages between the reconnect-storm coordinator (`reconnect-storm.ts`) and its workers (`storm-worker.ts`). */

/** The topic every storm subscriber watches; events carry the publisher's ids `s1`, `s2`, … */
export const STORM_TOPIC = "storm";

/** Milliseconds on the system-wide monotonic clock: comparable between the bench's processes. */
export function monoMs(): number {
  return Number(process.hrtime.bigint() / 1000n) / 1000;
}

/** Coordinator → worker. Every command is answered with a `done` carrying the same `seq`. */
export type StormCommand =
  | {
      seq: number;
      cmd: "open";
      /** Each client's list of server ports, tried in turn (see `ReconnectingClient`). */
      ports: number[][];
      localAddress: string;
      /** Connections in progress at once while opening. */
      atOnce: number;
      timeoutMs: number;
    }
  | { seq: number; cmd: "report" }
  | { seq: number; cmd: "close" };

/** What one worker saw, answered to `report`. Times are `monoMs()`. */
export interface StormReport {
  clients: number;
  /** The most events every client of this worker has received, in order (the progress mark). */
  complete: number;
  /** Fewest and most events a client received. */
  minReceived: number;
  maxReceived: number;
  /** Events skipped (a gap in the ids), summed over clients. */
  lost: number;
  /** Events received again (an id at or below one already received), summed over clients. */
  duplicated: number;
  /** `reset` events received: the server could not resume from the client's Last-Event-ID. */
  resets: number;
  /** Responses other than 200, by `<status> <code>`. */
  refused: Record<string, number>;
  /** Attempts that got no response at all, by error code (ECONNREFUSED while the server is down…). */
  failed: Record<string, number>;
  /** Open streams that ended (the server went away or closed them). */
  dropped: number;
  /** 200 responses, first connections included. */
  opened: number;
  /** For each client that opened more than once: when its last stream opened. */
  reopenedAt: number[];
  /** `completeAt[n]`: when the last client of this worker received event n (0: not yet). */
  completeAt: number[];
  firstError: string | undefined;
  /** Clients by state when the report was made, and a few of those behind `complete + 1`. */
  states: Record<string, number>;
  behind: string[];
}

/** Worker → coordinator. */
export type StormMessage =
  | { type: "done"; seq: number; ok: boolean; error?: string; report?: StormReport }
  /** Every client of this worker has received events 1 to `complete`. */
  | { type: "progress"; complete: number };
