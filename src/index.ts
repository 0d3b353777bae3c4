/**
 * Herald as a library: the Fastify plugin (default export) and the types an embedding app needs.
 * The service itself (`npm start`) is `main.ts`, a thin shell around the same plugin.
 */
export type { Broker, EventInput, HistoryMark, Location, PublishResult, StoredEvent } from "./broker/broker.js";
export { MemoryBroker } from "./broker/memory-broker.js";
export type { BrokerKind } from "./config.js";
export { ConfigError } from "./config.js";
export type { HeraldApi, HeraldOptions, HeraldSettings } from "./plugin.js";
export { herald, herald as default } from "./plugin.js";
export type { PublishAnswer, PublishBody } from "./routes/events.js";
export type { Stats } from "./routes/stats.js";
