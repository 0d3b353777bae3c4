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
      const { SqliteBroker } = await import("./sqlite-broker.js");
      return SqliteBroker.open({ ...history, path: config.databasePath });
    }
    case "redis": {
      const { RedisBroker } = await import("./redis-broker.js");
      return RedisBroker.connect({ ...history, url: config.redisUrl, prefix: config.redisPrefix, log });
    }
  }
}
