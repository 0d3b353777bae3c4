// A Herald node reduced to its subscriptions registry, for tests that kill it (SIGKILL): it joins
// the subscribers listed in SUBSCRIBERS (comma-separated) to the topics in TOPICS, on the Redis
// cluster REDIS_URL / REDIS_PREFIX, prints "joined <node id>", and waits to be killed.
// It runs the compiled dist/ (test/global-setup.ts builds it).
import pino from "pino";
import { RedisBroker } from "../../dist/broker/redis-broker.js";
import { PresenceRegistry } from "../../dist/mercure/presence.js";
import { RedisPresenceStore } from "../../dist/mercure/presence-redis.js";

const { REDIS_URL: url, REDIS_PREFIX: prefix, SUBSCRIBERS, TOPICS } = process.env;
const log = pino({ level: "silent" });
const broker = await RedisBroker.connect({ url, prefix, historySize: 10_000, log });
const store = new RedisPresenceStore({ url, prefix, log });
const presence = new PresenceRegistry({ publish: (input) => broker.publish(input), log, store });
await presence.start();
for (const subscriber of SUBSCRIBERS.split(",")) {
  presence.join({ subscriber, topics: TOPICS.split(","), payload: { node: "doomed" } });
}
process.stdout.write(`joined ${store.node}\n`);
setInterval(() => {}, 60_000);
