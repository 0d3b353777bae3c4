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
 * and nothing is lost when the process exits.
 */
export function loggerOptions(config: Config, stdoutIsTty = process.stdout.isTTY === true) {
  const pretty = resolveLogFormat(config.logFormat, stdoutIsTty) === "pretty";
  return {
    level: config.logLevel,
    serializers: { req: logRequest },
    ...(pretty && {
      stream: pinoPretty({ sync: true, translateTime: "SYS:HH:MM:ss.l", ignore: PRETTY_IGNORE }),
    }),
  } satisfies FastifyServerOptions["logger"];
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
    if (request.log.level !== "debug" && request.log.level !== "trace") return;
    reply.raw.once("close", () => {
      // A finished response had its line from requestCompleted.
      if (!reply.raw.writableFinished) logLine(request, reply, "when the client left");
    });
  }

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (error) {
      reply.log.error({ req: request, res: reply, err: error, responseTime: reply.elapsedTime }, "request errored");
    } else logLine(request, reply, "");
  }
}

function logLine(request: FastifyRequest, reply: FastifyReply, note: string): void {
  const ms = Math.round(reply.elapsedTime * 10) / 10;
  const { method, url } = logRequest(request);
  reply.log.debug(
    { req: request, res: reply, responseTime: reply.elapsedTime },
    `${method} ${url} ${reply.statusCode} in ${ms} ms${note && ` ${note}`}`,
  );
}
