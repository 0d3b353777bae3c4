import type { FastifyBaseLogger } from "fastify";
import type { Config } from "../config.js";
import type { Broker } from "./broker.js";
import { MemoryBroker } from "./memory-broker.js";

/** Makes the broker `config.broker` names. The engines with native or network parts load only when chosen. */
export async function createBroker(config: Config, log: FastifyBaseLogger): Promise<Broker> {
  const history = { historySize: config.historySize, historyTtlS: config.historyTtlS };
  switch (config.broker) {
    case "memory":
      return new MemoryBroker(history);
    case "sqlite": {
      // better-sqlite3 loads its compiled part on the first `new Database()`, inside `open`, not at import.
      try {
        const { SqliteBroker } = await import("./sqlite-broker.js");
        return SqliteBroker.open({ ...history, path: config.databasePath });
      } catch (err) {
        throw nativeModuleHint(err);
      }
    }
    case "redis": {
      const { RedisBroker } = await import("./redis-broker.js");
      return RedisBroker.connect({
        ...history,
        url: config.redisUrl,
        sentinels: config.redisSentinels,
        ...(config.redisMasterName !== undefined && { masterName: config.redisMasterName }),
        waitReplicas: config.redisWaitReplicas,
        waitTimeoutMs: config.redisWaitTimeoutMs,
        prefix: config.redisPrefix,
        log,
      });
    }
  }
}

/**
 * Turns the error thrown when better-sqlite3's compiled part cannot be loaded (built for another
 * Node.js version, such as after switching from Node 20 to 24, or missing because its install
 * script did not run) into one that says what to run, keeping the original as `cause`. Any other
 * error comes back unchanged.
 */
export function nativeModuleHint(err: unknown, nodeVersion: string = process.version): unknown {
  if (!(err instanceof Error)) return err;
  const code = (err as NodeJS.ErrnoException).code;
  const abi = /NODE_MODULE_VERSION (\d+)[\s\S]*?NODE_MODULE_VERSION (\d+)/.exec(err.message);
  let why: string;
  if (abi) {
    why = `it was compiled for another Node.js version (NODE_MODULE_VERSION ${abi[1]}; this Node.js ${nodeVersion} needs ${abi[2]})`;
  } else if (code === "ERR_DLOPEN_FAILED") {
    why = `its compiled part did not load (${err.message.split("\n")[0]})`;
  } else if (err.message.startsWith("Could not locate the bindings file")) {
    why = "its compiled part is missing (its install script did not run or failed)";
  } else {
    return err;
  }
  return new Error(
    `BROKER=sqlite needs better-sqlite3 built for the Node.js that runs Herald, but ${why}. ` +
      `Run \`npm rebuild better-sqlite3\` in Herald's directory with this Node.js (${nodeVersion}), then start Herald again`,
    { cause: err },
  );
}
