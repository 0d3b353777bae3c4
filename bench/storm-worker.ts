/**
 * A reconnect-storm worker: holds a share of the subscribers as `ReconnectingClient`s, checks that
 * each gets events `s1`, `s2`, … exactly once and in order across every reconnection, and notes
 * when the last of its clients received each event. Driven by `reconnect-storm.ts` over IPC.
 */
import { type ClientEvents, ReconnectingClient } from "./reconnecting-client.js";
import { monoMs, STORM_TOPIC, type StormCommand, type StormMessage, type StormReport } from "./storm-protocol.js";

/** Highest event number tracked; the coordinator publishes far fewer. */
const MAX_EVENTS = 200_000;
const PATH = `/events?topic=${STORM_TOPIC}`;

let clients: ReconnectingClient[] = [];
/** `have[n]`: clients that received event n, in order; `completeAt[n]`: when the last one did. */
let have = new Uint32Array(MAX_EVENTS + 1);
let completeAt = new Float64Array(MAX_EVENTS + 1);
let complete = 0;
let lost = 0;
let duplicated = 0;
let resets = 0;
let dropped = 0;
let opened = 0;
let refused: Record<string, number> = {};
let failed: Record<string, number> = {};
let firstError: string | undefined;
let progressScheduled = false;
/** Called whenever a client opens a stream, while `open` waits for all of them. */
let onOpened: () => void = () => {};

function send(message: StormMessage): void {
  process.send?.(message);
}

function count(table: Record<string, number>, key: string): void {
  table[key] = (table[key] ?? 0) + 1;
}

function reportProgress(): void {
  progressScheduled = false;
  send({ type: "progress", complete });
}

const events: ClientEvents = {
  open(client) {
    opened++;
    client.opened++;
    client.openedAt = monoMs();
    onOpened();
  },
  message(client, id) {
    const n = Number(/^s(\d+)$/.exec(id)?.[1] ?? Number.NaN);
    if (!Number.isSafeInteger(n) || n < 1 || n > MAX_EVENTS) {
      firstError ??= `an event with the unexpected id ${JSON.stringify(id)}`;
      return;
    }
    if (n < client.next) {
      duplicated++;
      firstError ??= `a client expecting s${client.next} got s${n} again`;
      return;
    }
    if (n > client.next) {
      lost += n - client.next;
      firstError ??= `a client expecting s${client.next} got s${n}`;
    }
    client.next = n + 1;
    have[n] = (have[n] ?? 0) + 1;
    if (have[n] === clients.length && n === complete + 1) {
      const now = monoMs();
      while (have[complete + 1] === clients.length) {
        complete++;
        completeAt[complete] = now;
      }
      if (!progressScheduled) {
        progressScheduled = true;
        setImmediate(reportProgress);
      }
    }
  },
  reset(_client, data) {
    resets++;
    firstError ??= `a client got a reset: ${data}`;
  },
  refused(_client, reason) {
    count(refused, reason);
  },
  failed(_client, code) {
    count(failed, code);
  },
  dropped() {
    dropped++;
  },
};

function open(command: Extract<StormCommand, { cmd: "open" }>): Promise<void> {
  const { ports, localAddress, atOnce, timeoutMs } = command;
  const created = ports.map((list) => new ReconnectingClient(list, localAddress, PATH, events));
  clients.push(...created);
  return new Promise((resolve, reject) => {
    let started = 0;
    let ready = 0;
    const timer = setTimeout(() => {
      onOpened = () => {};
      reject(new Error(`opened ${ready} of ${created.length} streams in ${timeoutMs} ms`));
    }, timeoutMs);
    const startOne = () => created[started++]?.connect();
    onOpened = () => {
      ready++;
      if (ready === created.length) {
        clearTimeout(timer);
        onOpened = () => {};
        resolve();
      } else if (started < created.length) startOne();
    };
    if (created.length === 0) onOpened = () => {};
    if (created.length === 0) resolve();
    for (let i = 0; i < Math.min(atOnce, created.length); i++) startOne();
  });
}

function report(): StormReport {
  let minReceived = Number.POSITIVE_INFINITY;
  let maxReceived = 0;
  const reopenedAt: number[] = [];
  const states: Record<string, number> = {};
  const behind: string[] = [];
  for (const client of clients) {
    count(states, client.state);
    if (client.next <= complete + 1 && behind.length < 5) {
      behind.push(`${client.state}, next s${client.next}, opened ${client.opened}, last id ${client.lastEventId}`);
    }
    minReceived = Math.min(minReceived, client.next - 1);
    maxReceived = Math.max(maxReceived, client.next - 1);
    if (client.opened > 1) reopenedAt.push(client.openedAt);
  }
  return {
    clients: clients.length,
    complete,
    minReceived: clients.length === 0 ? 0 : minReceived,
    maxReceived,
    lost,
    duplicated,
    resets,
    refused,
    failed,
    dropped,
    opened,
    reopenedAt,
    completeAt: Array.from(completeAt.subarray(0, complete + 1)),
    firstError,
    states,
    behind,
  };
}

function closeAll(): void {
  for (const client of clients) client.close();
  clients = [];
  have = new Uint32Array(MAX_EVENTS + 1);
  completeAt = new Float64Array(MAX_EVENTS + 1);
  complete = 0;
  lost = 0;
  duplicated = 0;
  resets = 0;
  dropped = 0;
  opened = 0;
  refused = {};
  failed = {};
  firstError = undefined;
}

process.on("message", async (command: StormCommand) => {
  try {
    switch (command.cmd) {
      case "open":
        await open(command);
        break;
      case "report":
        send({ type: "done", seq: command.seq, ok: true, report: report() });
        return;
      case "close":
        closeAll();
        break;
    }
    send({ type: "done", seq: command.seq, ok: true });
  } catch (err) {
    send({ type: "done", seq: command.seq, ok: false, error: (err as Error).message });
  }
});
// The coordinator is gone (even killed): never outlive it.
process.on("disconnect", () => process.exit(0));
