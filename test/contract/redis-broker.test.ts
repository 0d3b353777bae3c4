import { afterAll } from "vitest";
import { RedisBroker } from "../../src/broker/redis-broker.js";
import { deleteKeys, REDIS_URL, uniquePrefix } from "../helpers/redis.js";
import { silentLogger } from "../helpers/server.js";
import { describeBrokerContract } from "./broker-contract.js";

const prefixes: string[] = [];
afterAll(async () => {
  await Promise.all(prefixes.map((prefix) => deleteKeys(prefix)));
});

describeBrokerContract("RedisBroker", async (options) => {
  const prefix = uniquePrefix();
  prefixes.push(prefix);
  const broker = await RedisBroker.connect({ ...options, url: REDIS_URL, prefix, log: silentLogger });
  if (!broker.status().ok) throw new Error(`Redis is not reachable at ${REDIS_URL}; .ci/run starts it`);
  return broker;
});
