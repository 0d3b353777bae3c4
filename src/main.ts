import { closeSync, existsSync } from "node:fs";
import { isatty } from "node:tty";
import closeWithGrace from "close-with-grace";
import { buildApp } from "./app.js";
import { parseCommandLine, VERSION } from "./cli.js";
import { ConfigError, loadConfig, SHUTDOWN_GRACE_MS } from "./config.js";
import { describeListenError } from "./listen-error.js";
import { onTerminalGone, resolveLogFormat } from "./logger.js";
import { describeStartup, listenUrl, logStartupSummary } from "./startup-summary.js";
import { reloadCertificateOnSighup } from "./tls.js";

// On exit Node 20 puts each standard stream that was a terminal at start-up back in the mode it had,
// and aborts if that fails, which it does once the terminal has hung up (tcsetattr: EIO;
// nodejs/node#51519, fixed upstream by nodejs/node#58200). It skips a descriptor that was closed:
// close those whose terminal is gone, so that a hangup ends in a clean exit, not a crash.
const startupTerminals = [0, 1, 2].filter((fd) => isatty(fd));
process.on("exit", () => {
  for (const fd of startupTerminals) if (!isatty(fd)) closeQuietly(fd);
});

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Already closed: nothing to let go of.
  }
}

// --help and --version answer before any setting is read: they work with a broken .env too.
const command = parseCommandLine(process.argv.slice(2));
if (!command.run) {
  if (command.stdout) process.stdout.write(command.stdout);
  if (command.stderr) process.stderr.write(command.stderr);
  process.exit(command.exitCode);
}

if (existsSync(".env")) process.loadEnvFile(".env");

let config: ReturnType<typeof loadConfig>;
try {
  config = loadConfig(process.env);
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  console.error(`herald: ${err.message}`);
  process.exit(1);
}

const app = await buildApp(config).catch((err: Error) => {
  console.error(`herald: could not start: ${err.message}`);
  process.exit(1);
});
// With TLS, SIGHUP reloads the certificate (see src/tls.ts) instead of stopping Herald.
const tls = config.tlsCertFile !== undefined;
if (tls) reloadCertificateOnSighup(app, config);
// close-with-grace also listens to the signals a fault raises (SIGSEGV, SIGBUS...). A listener there
// cannot run: Node's handler returns, the faulting instruction runs again, and the process spins at
// 100% CPU instead of crashing (https://nodejs.org/api/process.html#signal-events). Leave those to the OS.
const FAULT_SIGNALS = ["SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGABRT"] as const;
let shuttingDown = false;
const shutdown = closeWithGrace(
  { delay: SHUTDOWN_GRACE_MS, skip: [...FAULT_SIGNALS, ...(tls ? (["SIGHUP"] as const) : [])] },
  async ({ signal, err }) => {
    shuttingDown = true;
    if (err) app.log.error({ err }, "shutting down after an error");
    else app.log.info({ signal }, signal ? "shutting down" : "shutting down: the terminal hung up");
    await app.close();
  },
);
// Started from a terminal that has since hung up (the window closed, SSH dropped): nobody is
// there to read the logs or stop Herald, so it stops as on SIGTERM. Without TLS the hangup's SIGHUP
// already did; with TLS, SIGHUP means "reload the certificate", and the failed write of that
// reload's log line is what tells.
onTerminalGone(() => {
  if (!shuttingDown) shutdown.close();
});
const address = await app
  .listen({ port: config.port, host: config.host, backlog: config.listenBacklog })
  .catch(async (err: NodeJS.ErrnoException) => {
    const reason = describeListenError(err, config);
    if (reason === undefined) throw err;
    console.error(`herald: could not listen: ${reason}`);
    await app.close();
    process.exit(1);
  });
const port = (app.server.address() as { port: number }).port;
const url = listenUrl(new URL(address).protocol, config.host, port);
const pretty = resolveLogFormat(config.logFormat, process.stdout.isTTY === true) === "pretty";
logStartupSummary(app.log, describeStartup(config, url, VERSION), pretty);
