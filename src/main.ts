import { existsSync } from "node:fs";
import closeWithGrace from "close-with-grace";
import { buildApp } from "./app.js";
import { ConfigError, loadConfig } from "./config.js";
import { reloadCertificateOnSighup } from "./tls.js";

/** Longest a shutdown may take before the process exits anyway. */
const SHUTDOWN_GRACE_MS = 5_000;

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
closeWithGrace({ delay: SHUTDOWN_GRACE_MS, skip: tls ? ["SIGHUP"] : [] }, async ({ signal, err }) => {
  if (err) app.log.error({ err }, "shutting down after an error");
  else app.log.info({ signal }, "shutting down");
  await app.close();
});
await app.listen({ port: config.port, host: config.host });
