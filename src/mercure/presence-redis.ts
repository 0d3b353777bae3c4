import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { FastifyBaseLogger } from "fastify";
import { Redis } from "ioredis";
import type { PresenceEntry, PresenceStore, PresenceStoreHooks } from "./presence.js";

/** Options for `RedisPresenceStore`. */
export interface RedisPresenceStoreOptions {
  url: string;
  /** `REDIS_PREFIX`: the store's keys are `<prefix>:presence:…`. */
  prefix: string;
  log: FastifyBaseLogger;
  /** How often this node renews its liveness and looks for dead nodes. */
  heartbeatMs?: number;
  /** A node whose liveness is this old is dead: its subscribers leave every list, and are ended. */
  ttlMs?: number;
}

/** Defaults: a dead node leaves lists within `TTL_MS` and is ended within `TTL_MS + HEARTBEAT_MS`. */
export const PRESENCE_HEARTBEAT_MS = 2_000;
export const PRESENCE_TTL_MS = 6_000;
/** Keys of a cluster whose nodes are all gone expire after a day. */
const IDLE_KEY_MS = 86_400_000;
/** Fields per HSET/HDEL, so one command stays small whatever the storm. */
const FIELDS_PER_COMMAND = 1_000;
/** Dead nodes one heartbeat reaps; more wait for the next beat. */
const DEAD_PER_BEAT = 16;
const COMMAND_TIMEOUT_MS = 2_000;

/** Redis's clock, in ms: every node compares liveness on one clock, whatever the skew between machines. */
const NOW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

/**
 * Renews this node (score = its expiry), then claims dead nodes: reading a dead node's hash,
 * deleting it and removing the node happen in one script, so exactly one surviving node gets each
 * dead node's subscribers. Returns {1 if this node was absent (new, or reaped by others), hashes…}.
 */
const HEARTBEAT_SCRIPT = `${NOW}
local added = redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
local out = {added}
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now, 'LIMIT', 0, tonumber(ARGV[4]))
for _, node in ipairs(dead) do
  local key = ARGV[3] .. node
  out[#out + 1] = redis.call('HGETALL', key)
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[1], node)
end
return out
`;

/** The hashes (or one subscriber's field) of every live node but this one. */
const LIST_SCRIPT = `${NOW}
local live = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
local out = {}
for _, node in ipairs(live) do
  if node ~= ARGV[2] then
    local key = ARGV[1] .. node
    if ARGV[4] == '1' then
      local value = redis.call('HGET', key, ARGV[3])
      if value then out[#out + 1] = {ARGV[3], value} end
    else
      out[#out + 1] = redis.call('HGETALL', key)
    end
  end
end
return out
`;

interface PresenceCommands {
  heraldPresenceBeat(
    nodes: string,
    hash: string,
    node: string,
    ttlMs: number,
    hashPrefix: string,
    deadPerBeat: number,
    idleMs: number,
  ): Promise<[number, ...string[][]]>;
  heraldPresenceList(
    nodes: string,
    hashPrefix: string,
    node: string,
    subscriber: string,
    one: "0" | "1",
  ): Promise<string[][]>;
}

function encode(entry: PresenceEntry): string {
  return JSON.stringify(entry.payload === undefined ? { t: entry.topics } : { t: entry.topics, p: entry.payload });
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

interface Batch {
  readonly done: Promise<void>;
  readonly resolve: () => void;
}

/**
 * Shares a registry's subscribers across a Herald cluster on Redis (`BROKER=redis`), on its own
 * connection. Each node keeps one hash of its subscribers (`<prefix>:presence:node:<id>`) and a
 * score in a sorted set (`<prefix>:presence:nodes`): its expiry on Redis's clock, renewed every
 * `heartbeatMs`. Lists read the hashes of nodes whose expiry is ahead, so a dead node's
 * subscribers leave every list within `ttlMs`; the next heartbeat of any survivor (within
 * `heartbeatMs` more) claims them atomically and hands them to its registry, which announces their
 * end. Writes are coalesced: every join and leave of one event-loop turn goes in one pipeline (one
 * round trip). When a write fails (Redis unreachable) the next successful heartbeat rewrites the
 * whole hash; when other nodes had declared this node dead, it rewrites it and has its registry
 * announce its subscribers again. Needs a single Redis (or a primary with replicas), not Redis
 * Cluster: the scripts read keys they find.
 */
export class RedisPresenceStore implements PresenceStore {
  readonly #redis: Redis & PresenceCommands;
  readonly #log: FastifyBaseLogger;
  readonly #heartbeatMs: number;
  readonly #ttlMs: number;
  readonly #node = `${hostname()}:${process.pid}:${randomBytes(6).toString("hex")}`;
  readonly #nodesKey: string;
  readonly #hashPrefix: string;
  readonly #hashKey: string;
  /** Writes waiting for the end of this event-loop turn: subscriber → encoded entry, or null to remove. */
  #pending = new Map<string, string | null>();
  #batch: Batch | undefined;
  readonly #flushing = new Set<Promise<void>>();
  #hooks: PresenceStoreHooks | undefined;
  #timer: NodeJS.Timeout | undefined;
  #beating: Promise<void> | undefined;
  /** This node's hash may differ from its subscribers: rewrite it at the next heartbeat. */
  #resync = false;
  /** A heartbeat has succeeded: from now on, finding this node absent means others reaped it. */
  #registered = false;
  #roundTrips = 0;

  constructor(options: RedisPresenceStoreOptions) {
    this.#redis = new Redis(options.url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: COMMAND_TIMEOUT_MS,
    }) as Redis & PresenceCommands;
    this.#redis.defineCommand("heraldPresenceBeat", { numberOfKeys: 2, lua: HEARTBEAT_SCRIPT });
    this.#redis.defineCommand("heraldPresenceList", { numberOfKeys: 1, lua: LIST_SCRIPT });
    this.#log = options.log;
    this.#heartbeatMs = options.heartbeatMs ?? PRESENCE_HEARTBEAT_MS;
    this.#ttlMs = options.ttlMs ?? PRESENCE_TTL_MS;
    this.#nodesKey = `${options.prefix}:presence:nodes`;
    this.#hashPrefix = `${options.prefix}:presence:node:`;
    this.#hashKey = this.#hashPrefix + this.#node;
    this.#redis.on("error", (err: Error) => this.#log.warn({ err, client: "presence" }, "Redis connection error"));
  }

  /** This node's id in Redis. */
  get node(): string {
    return this.#node;
  }

  /** Round trips to Redis so far (pipelines and scripts), for benchmarks. */
  get roundTrips(): number {
    return this.#roundTrips;
  }

  /** Connects and registers this node; when Redis is down, starts anyway and keeps trying. */
  async start(hooks: PresenceStoreHooks): Promise<void> {
    this.#hooks = hooks;
    try {
      await this.#redis.connect();
    } catch (err) {
      this.#log.error({ err }, "Redis is unreachable for the subscriptions registry; retrying");
    }
    await this.#heartbeat();
    this.#timer = setInterval(() => void this.#heartbeat(), this.#heartbeatMs);
    this.#timer.unref();
  }

  write(subscriber: string, entry: PresenceEntry | undefined): Promise<void> {
    // Last write wins within a turn: a join and leave in the same turn cost nothing.
    this.#pending.set(subscriber, entry === undefined ? null : encode(entry));
    if (this.#batch === undefined) {
      let resolve!: () => void;
      const done = new Promise<void>((r) => {
        resolve = r;
      });
      this.#batch = { done, resolve };
      setImmediate(() => this.#flush());
    }
    return this.#batch.done;
  }

  async others(subscriber?: string): Promise<PresenceEntry[]> {
    const hashes = await this.#redis.heraldPresenceList(
      this.#nodesKey,
      this.#hashPrefix,
      this.#node,
      subscriber ?? "",
      subscriber === undefined ? "0" : "1",
    );
    this.#roundTrips++;
    return hashes.flatMap((fields) => this.#decode(fields));
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#batch !== undefined) this.#flush();
    await Promise.all([...this.#flushing, this.#beating]);
    try {
      await this.#redis.multi().zrem(this.#nodesKey, this.#node).del(this.#hashKey).exec();
      await this.#redis.quit();
    } catch (err) {
      this.#log.warn({ err }, "could not remove this node from the subscriptions registry; others will reap it");
      this.#redis.disconnect();
    }
  }

  #flush(): void {
    const batch = this.#batch;
    const pending = this.#pending;
    if (batch === undefined) return;
    this.#batch = undefined;
    this.#pending = new Map();
    const sets: string[] = [];
    const removals: string[] = [];
    for (const [subscriber, value] of pending) {
      if (value === null) removals.push(subscriber);
      else sets.push(subscriber, value);
    }
    const pipeline = this.#redis.pipeline();
    for (const chunk of chunks(sets, FIELDS_PER_COMMAND * 2)) pipeline.hset(this.#hashKey, ...chunk);
    for (const chunk of chunks(removals, FIELDS_PER_COMMAND)) pipeline.hdel(this.#hashKey, ...chunk);
    const flushing = this.#exec(pipeline, "write subscribers").then((ok) => {
      if (!ok) this.#resync = true;
      batch.resolve();
    });
    this.#flushing.add(flushing);
    void flushing.finally(() => this.#flushing.delete(flushing));
  }

  /** Runs a pipeline or transaction; false (logged) when it failed. */
  async #exec(pipeline: ReturnType<Redis["pipeline"]>, what: string): Promise<boolean> {
    try {
      const results = await pipeline.exec();
      this.#roundTrips++;
      const failed = results?.find(([err]) => err !== null)?.[0];
      if (failed) throw failed;
      return results !== null;
    } catch (err) {
      this.#log.warn({ err }, `subscriptions registry: could not ${what} in Redis; will rewrite them`);
      return false;
    }
  }

  #heartbeat(): Promise<void> {
    this.#beating ??= this.#beat().finally(() => {
      this.#beating = undefined;
    });
    return this.#beating;
  }

  async #beat(): Promise<void> {
    const hooks = this.#hooks;
    if (hooks === undefined) return;
    let result: [number, ...string[][]];
    try {
      result = await this.#redis.heraldPresenceBeat(
        this.#nodesKey,
        this.#hashKey,
        this.#node,
        this.#ttlMs,
        this.#hashPrefix,
        DEAD_PER_BEAT,
        IDLE_KEY_MS,
      );
      this.#roundTrips++;
    } catch (err) {
      this.#log.warn({ err }, "subscriptions registry: heartbeat failed; other nodes drop this one if it lasts");
      return;
    }
    const [added, ...dead] = result;
    const rejoined = added === 1 && this.#registered;
    this.#registered = true;
    if (rejoined) {
      this.#log.warn("other nodes had declared this node dead and ended its subscriptions; announcing them again");
    }
    if (this.#resync || rejoined) await this.#rewrite();
    if (rejoined) hooks.rejoined();
    const reaped = dead.flatMap((fields) => this.#decode(fields));
    if (reaped.length > 0) hooks.reaped(reaped);
  }

  /** Replaces this node's hash with its registry's subscribers, in one transaction. */
  async #rewrite(): Promise<void> {
    this.#resync = false;
    const entries = this.#hooks?.snapshot() ?? [];
    const transaction = this.#redis.multi().del(this.#hashKey);
    const fields = entries.flatMap((entry) => [entry.subscriber, encode(entry)]);
    for (const chunk of chunks(fields, FIELDS_PER_COMMAND * 2)) transaction.hset(this.#hashKey, ...chunk);
    if (!(await this.#exec(transaction, "rewrite subscribers"))) this.#resync = true;
  }

  #decode(fields: string[]): PresenceEntry[] {
    const entries: PresenceEntry[] = [];
    for (let i = 0; i + 1 < fields.length; i += 2) {
      try {
        const { t, p } = JSON.parse(fields[i + 1] as string) as { t: string[]; p?: unknown };
        entries.push({ subscriber: fields[i] as string, topics: t, ...(p !== undefined && { payload: p }) });
      } catch (err) {
        this.#log.warn({ err, subscriber: fields[i] }, "subscriptions registry: skipped an unreadable entry");
      }
    }
    return entries;
  }
}
