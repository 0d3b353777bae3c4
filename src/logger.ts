import { writeSync } from "node:fs";
import { Writable } from "node:stream";
import { type FastifyReply, type FastifyRequest, type FastifyServerOptions, LogController } from "fastify";
import pinoPretty from "pino-pretty";
import { logRequest } from "./auth/request-token.js";
import type { Config, LogFormat } from "./config.js";

/** `auto` resolved: pretty for a person at a terminal, JSON for a log pipeline. */
export function resolveLogFormat(format: LogFormat, stdoutIsTty: boolean): "pretty" | "json" {
  if (format !== "auto") return format;
  return stdoutIsTty ? "pretty" : "json";
}

/** Left out of pretty lines: a request line's message already says what its fields hold. */
const PRETTY_IGNORE = "pid,hostname,reqId,req,res,responseTime";

/**
 * Fastify's logger for `config`: pino's JSON lines, or, for `pretty`, the same records through
 * pino-pretty (local clock time, level names, no pid or host name). Pretty output is written
 * synchronously, in this thread: it is meant for a terminal, where a person reads at human speed,
 * and nothing is lost when the process exits. On a terminal, either format goes through a
 * `TerminalStream`, which notices the terminal hanging up (see `onTerminalGone`).
 */
export function loggerOptions(config: Config, stdoutIsTty = process.stdout.isTTY === true) {
  const pretty = resolveLogFormat(config.logFormat, stdoutIsTty) === "pretty";
  const terminal = stdoutIsTty ? new TerminalStream(1) : undefined;
  const prettyOptions = { translateTime: "SYS:HH:MM:ss.l", ignore: PRETTY_IGNORE };
  return {
    level: config.logLevel,
    serializers: { req: logRequest },
    ...(pretty
      ? { stream: pinoPretty({ ...prettyOptions, ...(terminal ? { destination: terminal } : { sync: true }) }) }
      : terminal && { stream: terminal }),
  } satisfies FastifyServerOptions["logger"];
}

let terminalGone = false;
const terminalGoneListeners: (() => void)[] = [];

/**
 * Calls `listener` once the terminal the logs go to has hung up (its window closed, its SSH
 * connection dropped): a write to it failed with EIO, or EPIPE. From then on, log lines are
 * dropped. Never called when stdout is not a terminal: a log pipeline that breaks is its own
 * business, and pino drops lines on EPIPE there.
 */
export function onTerminalGone(listener: () => void): void {
  terminalGoneListeners.push(listener);
}

/** `Atomics.wait` on this sleeps without a timer: writes here are synchronous. */
const sleeper = new Int32Array(new SharedArrayBuffer(4));
const BUSY_TERMINAL_RETRY_MS = 10;

/**
 * Writes to a terminal's file descriptor, at once and in full, in this thread. A write that fails
 * because the terminal hung up is dropped, as is every later one, and `onTerminalGone` listeners
 * are told (once per process: there is one terminal). Any other failure is the stream's error.
 */
class TerminalStream extends Writable {
  readonly #fd: number;

  constructor(fd: number) {
    super({ decodeStrings: false });
    this.#fd = fd;
  }

  override _write(chunk: string | Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    callback(terminalGone ? null : this.#write(typeof chunk === "string" ? Buffer.from(chunk) : chunk));
  }

  #write(buffer: Buffer): Error | null {
    try {
      writeFully(this.#fd, buffer);
      return null;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "EIO" && code !== "EPIPE") return err as Error;
      terminalGone = true;
      // Not from inside a log call: a listener that shuts down logs too.
      process.nextTick(() => {
        for (const listener of terminalGoneListeners.splice(0)) listener();
      });
      return null;
    }
  }
}

function writeFully(fd: number, buffer: Buffer): void {
  let written = 0;
  while (written < buffer.length) {
    try {
      written += writeSync(fd, buffer, written);
    } catch (err) {
      // A terminal another program made non-blocking: wait for it to take more.
      if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw err;
      Atomics.wait(sleeper, 0, 0, BUSY_TERMINAL_RETRY_MS);
    }
  }
}

/**
 * Fastify's per-request log lines, moved down: one `debug` line per answered request (method, URL,
 * status, time) in place of two `info` lines, so that at the default level a busy service logs what
 * happens to it rather than every request. Failed requests still log at `error`. A stream's line
 * comes when it ends, whoever ends it.
 */
export class HeraldLogController extends LogController {
  /** Nothing at `info`; at `debug`, a response the client abandons (a stream it left) still gets its line. */
  override incomingRequest(request: FastifyRequest, reply: FastifyReply): void {
    if (!logsDebug(request)) return;
    reply.raw.once("close", () => {
      // A finished response had its line from requestCompleted.
      if (!reply.raw.writableFinished) logLine(request, reply, "when the client left");
    });
  }

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (error) {
      reply.log.error({ req: request, res: reply, err: error, responseTime: reply.elapsedTime }, "request errored");
    } else if (logsDebug(request)) logLine(request, reply, "");
  }
}

/** Whether `request`'s logger writes `debug` lines: when not, a line is not even composed. */
function logsDebug(request: FastifyRequest): boolean {
  return request.log.level === "debug" || request.log.level === "trace";
}

function logLine(request: FastifyRequest, reply: FastifyReply, note: string): void {
  const ms = Math.round(reply.elapsedTime * 10) / 10;
  const { method, url } = logRequest(request);
  reply.log.debug(
    { req: request, res: reply, responseTime: reply.elapsedTime },
    `${method} ${url} ${reply.statusCode} in ${ms} ms${note && ` ${note}`}`,
  );
}
