/**
 * A load worker for `http2.ts`: holds a share of the subscriber streams over one protocol
 * (plain HTTP/1.1, HTTP/1.1 over TLS, or HTTP/2 with a given number of streams per connection),
 * counts each stream's events and records publish → deliver latency. Driven over IPC.
 */
import { type ClientHttp2Session, connect as h2Connect } from "node:http2";
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { EventScanner } from "./event-scanner.js";
import { Histogram } from "./histogram.js";

/** How the subscribers connect. */
export type Mode = "h1" | "h1-tls" | "h2";

/** Coordinator → worker; each is answered with `{ seq, ok, ... }`. */
export type H2Command =
  | { seq: number; cmd: "open"; mode: Mode; port: number; count: number; perConnection: number; ca: string }
  /** Clears the latency histogram and starts recording. */
  | { seq: number; cmd: "phase" }
  | { seq: number; cmd: "report" }
  | { seq: number; cmd: "close" };

/** What a worker counted. */
export interface H2Report {
  streams: number;
  minEvents: number;
  maxEvents: number;
  closed: number;
  latency: { buckets: [number, number][]; max: number };
}

const PATH = "/events?topic=bench";
const HEAD_END = Buffer.from("\r\n\r\n");
let latency = new Histogram();
let recording = false;
let counts: number[] = [];
let closed = 0;
/** Set while this worker closes its own streams: those closes are not the server's doing. */
let closing = false;
const sockets: Socket[] = [];
const sessions: ClientHttp2Session[] = [];

function scannerFor(index: number): EventScanner {
  return new EventScanner((_id, stamp) => {
    counts[index] = (counts[index] ?? 0) + 1;
    if (recording) latency.record(Number(process.hrtime.bigint() / 1000n) - stamp);
  });
}

/** One HTTP/1.1 stream on its own connection, TLS or not. */
function openH1(port: number, tls: boolean, ca: string, index: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = tls
      ? tlsConnect({ port, host: "127.0.0.1", ca, ALPNProtocols: ["http/1.1"] })
      : netConnect({ port, host: "127.0.0.1" });
    sockets.push(socket);
    const scanner = scannerFor(index);
    let head: Buffer | undefined = Buffer.alloc(0);
    socket.once(tls ? "secureConnect" : "connect", () =>
      socket.write(`GET ${PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`),
    );
    socket.on("error", reject);
    socket.on("close", () => {
      if (!closing) closed++;
    });
    socket.on("data", (chunk: Buffer) => {
      if (head === undefined) return scanner.feed(chunk);
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf(HEAD_END);
      if (end === -1) return;
      if (!head.subarray(0, 15).toString().startsWith("HTTP/1.1 200")) return reject(new Error("not a 200"));
      const rest = head.subarray(end + 4);
      head = undefined;
      scanner.feed(rest);
      resolve();
    });
  });
}

/** `perConnection` streams on one HTTP/2 connection. */
function openH2(port: number, ca: string, first: number, perConnection: number): Promise<void> {
  const session = h2Connect(`https://127.0.0.1:${port}`, { ca });
  sessions.push(session);
  session.on("error", () => {});
  const opened: Promise<void>[] = [];
  for (let i = 0; i < perConnection; i++) {
    const stream = session.request({ ":path": PATH, accept: "text/event-stream" });
    const scanner = scannerFor(first + i);
    stream.on("data", (chunk: Buffer) => scanner.feed(chunk));
    stream.on("close", () => {
      if (!closing) closed++;
    });
    stream.on("error", () => {});
    opened.push(
      new Promise((resolve, reject) =>
        stream.once("response", (headers) => (headers[":status"] === 200 ? resolve() : reject(new Error("not a 200")))),
      ),
    );
  }
  return Promise.all(opened).then(() => undefined);
}

async function open(command: Extract<H2Command, { cmd: "open" }>): Promise<void> {
  const { mode, port, count, perConnection, ca } = command;
  const base = counts.length;
  counts.length = base + count;
  counts.fill(0, base);
  // A few connections at a time: the listen backlog and the TLS handshakes stay within bounds.
  const perStep = mode === "h2" ? perConnection : 1;
  const inFlight: Promise<void>[] = [];
  for (let i = 0; i < count; i += perStep) {
    const n = Math.min(perStep, count - i);
    inFlight.push(mode === "h2" ? openH2(port, ca, base + i, n) : openH1(port, mode === "h1-tls", ca, base + i));
    if (inFlight.length >= 50) await Promise.all(inFlight.splice(0));
  }
  await Promise.all(inFlight);
}

function report(): H2Report {
  let minEvents = Number.POSITIVE_INFINITY;
  let maxEvents = 0;
  for (const n of counts) {
    minEvents = Math.min(minEvents, n);
    maxEvents = Math.max(maxEvents, n);
  }
  return {
    streams: counts.length,
    minEvents: counts.length ? minEvents : 0,
    maxEvents,
    closed,
    latency: latency.toJSON(),
  };
}

process.on("message", async (command: H2Command) => {
  try {
    if (command.cmd === "open") {
      closing = false;
      await open(command);
    }
    if (command.cmd === "phase") {
      latency = new Histogram();
      recording = true;
    }
    if (command.cmd === "report") {
      process.send?.({ seq: command.seq, ok: true, report: report() });
      return;
    }
    if (command.cmd === "close") {
      closing = true;
      for (const socket of sockets.splice(0)) socket.destroy();
      for (const session of sessions.splice(0)) session.destroy();
      counts = [];
      closed = 0;
      recording = false;
    }
    process.send?.({ seq: command.seq, ok: true });
  } catch (err) {
    process.send?.({ seq: command.seq, ok: false, error: (err as Error).message });
  }
});
process.on("disconnect", () => process.exit(0));
