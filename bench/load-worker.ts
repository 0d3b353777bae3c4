/**
 * A load worker: holds a share of the subscriber connections, as raw `node:net` clients (a heavy
 * client would steal the server's CPU), checks that each reader gets every event once and in
 * order, and records publish → deliver latency. Driven by the coordinator over IPC (protocol.ts).
 */
import { connect, type Socket } from "node:net";
import { EventScanner } from "./event-scanner.js";
import { Histogram } from "./histogram.js";
import type { ClientKind, Command, IdScheme, WorkerMessage, WorkerReport } from "./protocol.js";

/** How many events readers may be apart; the coordinator's publish window stays far below it. */
const RING = 1 << 16;
const HEAD_END = Buffer.from("\r\n\r\n");

let readers = 0;
let completed = 0;
/** `reached[n % RING]`: readers that have received at least n events, for the n not yet complete. */
let reached = new Uint32Array(RING);
let progressScheduled = false;
let latencyOn = false;
let latency = new Histogram();
let nowUs = 0;
let outOfOrder = 0;
let firstError: string | undefined;
let readersClosed = 0;
let clients: Client[] = [];

function send(message: WorkerMessage): void {
  process.send?.(message);
}

function reportProgress(): void {
  progressScheduled = false;
  send({ type: "progress", completed });
}

class Client {
  readonly socket: Socket;
  readonly kind: ClientKind;
  readonly ids: IdScheme;
  head: Buffer | undefined = Buffer.alloc(0);
  /** The id expected next (`sequence`), and the events counted so far (those before it joined count as received). */
  next: number;
  /** The last id received (0 before any). */
  last = 0;
  count: number;
  closing = false;
  readonly scanner: EventScanner;

  constructor(socket: Socket, kind: ClientKind, ids: IdScheme, after: number) {
    this.socket = socket;
    this.kind = kind;
    this.ids = ids;
    this.next = after + 1;
    this.count = after;
    this.scanner = new EventScanner((id, stamp) => this.onEvent(id, stamp), ids);
  }

  onEvent(id: number, stamp: number): void {
    if (this.ids === "sequence" ? id !== this.next : id <= this.last) {
      outOfOrder++;
      firstError ??=
        this.ids === "sequence"
          ? `a reader expected event ${this.next} and got ${id}`
          : `a reader got event ${id} after ${this.last}`;
    }
    this.next = id + 1;
    this.last = id;
    const n = ++this.count;
    if (latencyOn) latency.record(nowUs - stamp);
    const slot = n % RING;
    reached[slot] = (reached[slot] ?? 0) + 1;
    if (reached[slot] === readers && n === completed + 1) {
      // Later counts may have completed already, behind this one.
      while (reached[(completed + 1) % RING] === readers) {
        reached[(completed + 1) % RING] = 0;
        completed++;
      }
      if (!progressScheduled) {
        progressScheduled = true;
        setImmediate(reportProgress);
      }
    }
  }
}

function open(command: Extract<Command, { cmd: "connect" }>): Promise<number> {
  const { port, path, count, kind, ids, localAddress, timeoutMs, after, atOnce } = command;
  const request = Buffer.from(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\n\r\n`);
  return new Promise((resolve, reject) => {
    let started = 0;
    let ready = 0;
    let settled = false;
    const timer = setTimeout(
      () => finish(new Error(`opened ${ready} of ${count} streams in ${timeoutMs} ms`)),
      timeoutMs,
    );
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(ready);
    };
    const startOne = () => {
      started++;
      const socket = connect({ port, host: "127.0.0.1", localAddress });
      const client = new Client(socket, kind, ids, after);
      clients.push(client);
      if (kind === "reader") readers++;
      socket.on("error", () => {});
      socket.once("connect", () => socket.write(request));
      socket.on("close", () => {
        if (client.closing) return;
        if (client.head !== undefined) finish(new Error("the server closed a stream before answering"));
        else if (kind === "reader") readersClosed++;
      });
      socket.on("data", (chunk: Buffer) => {
        if (client.head !== undefined) {
          const head = Buffer.concat([client.head, chunk]);
          const end = head.indexOf(HEAD_END);
          if (end === -1) {
            client.head = head;
            return;
          }
          client.head = undefined;
          const status = head.subarray(0, head.indexOf("\r\n")).toString();
          if (!/^HTTP\/1\.1 200 /.test(status)) {
            finish(new Error(`a stream was answered "${status}"`));
            return;
          }
          ready++;
          if (ready === count) finish();
          else if (started < count) startOne();
          // A stalled client takes the head (so the server has subscribed it), then nothing more.
          if (kind === "stalled") socket.pause();
          else if (end + 4 < head.length) {
            nowUs = Number(process.hrtime.bigint() / 1000n);
            client.scanner.feed(head.subarray(end + 4));
          }
          return;
        }
        nowUs = Number(process.hrtime.bigint() / 1000n);
        client.scanner.feed(chunk);
      });
    };
    if (count === 0) finish();
    for (let i = 0; i < Math.min(count, atOnce); i++) startOne();
  });
}

function report(): WorkerReport {
  let events = 0;
  let minEvents = Number.POSITIVE_INFINITY;
  let maxEvents = 0;
  let stalled = 0;
  for (const client of clients) {
    if (client.kind === "stalled") {
      stalled++;
      continue;
    }
    events += client.count;
    minEvents = Math.min(minEvents, client.count);
    maxEvents = Math.max(maxEvents, client.count);
  }
  return {
    readers,
    stalled,
    events,
    minEvents: readers === 0 ? 0 : minEvents,
    maxEvents,
    outOfOrder,
    firstError,
    readersClosed,
    latency: latency.toJSON(),
  };
}

function closeAll(): void {
  for (const client of clients) {
    client.closing = true;
    client.socket.destroy();
  }
  clients = [];
  readers = 0;
  completed = 0;
  reached = new Uint32Array(RING);
  latency = new Histogram();
  latencyOn = false;
  outOfOrder = 0;
  firstError = undefined;
  readersClosed = 0;
}

process.on("message", async (command: Command) => {
  try {
    switch (command.cmd) {
      case "connect":
        send({ type: "done", seq: command.seq, ok: true, opened: await open(command) });
        return;
      case "phase":
        latency = new Histogram();
        latencyOn = command.latency;
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
