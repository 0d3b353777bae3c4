import { existsSync } from "node:fs";
import closeWithGrace from "close-with-grace";
import { buildApp } from "./app.js";
import { ConfigError, loadConfig, SHUTDOWN_GRACE_MS } from "./config.js";

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
closeWithGrace({ delay: SHUTDOWN_GRACE_MS }, async ({ signal, err }) => {
  if (err) app.log.error({ err }, "shutting down after an error");
  else app.log.info({ signal }, "shutting down");
  await app.close();
});
await app.listen({ port: config.port, host: config.host });
