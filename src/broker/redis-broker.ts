import type { FastifyBaseLogger } from "fastify";
import { Redis } from "ioredis";
import { BrokerUnavailableError, IdConflictError, InvalidEventError } from "../errors.js";
import {
  BEFORE_FIRST_POS,
  type Broker,
  type BrokerStatus,
  EARLIEST_ID,
  type EventInput,
  type Location,
  type PublishResult,
  type StoredEvent,
  sameContent,
} from "./broker.js";
import { Listeners } from "./listeners.js";

/** Options for `RedisBroker`. */
export interface RedisBrokerOptions {
  url: string;
  /** Prefix of every key this broker uses. */
  prefix: string;
  historySize: number;
  /** Events older than this many seconds leave history; 0 or absent keeps them. */
  historyTtlS?: number;
  log: FastifyBaseLogger;
}

/** A publish waits this long for Redis before answering 503; it may still have been stored (retry with the same id). */
const COMMAND_TIMEOUT_MS = 2_000;
/** How many entries one XRANGE/XREAD round trip fetches. */
const PAGE = 500;
/** The reader's XREAD blocks this long, then asks again (it also notices `close()` this way). */
const BLOCK_MS = 5_000;
/** Entries in a stream have ids `<ms>-<n>`; Herald uses them as event ids. */
const STREAM_ID = /^\d+-\d+$/;

/**
 * Appends one event atomically: the idempotency check for a publisher id, XADD with trimming by
 * size and age, and forgetting publisher ids whose events have left the stream (a bounded number
 * per call, so the id map stays as small as history). Returns {"new", id} or {"dup", id, fields}.
 */
const PUBLISH_SCRIPT = `
local stream, pids, pidtimes = KEYS[1], KEYS[2], KEYS[3]
local pid, topic, event, data, retry = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local maxlen, ttl, private, alternates = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8], ARGV[9]
if ttl > 0 then
  local now = redis.call('TIME')
  redis.call('XTRIM', stream, 'MINID', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - ttl)
end
if pid ~= '' then
  local sid = redis.call('HGET', pids, pid)
  if sid then
    local found = redis.call('XRANGE', stream, sid, sid)
    if #found > 0 then return {'dup', sid, found[1][2]} end
  end
end
local fields = {'t', topic, 'd', data}
if event ~= '' then fields[#fields + 1] = 'e'; fields[#fields + 1] = event end
if retry ~= '' then fields[#fields + 1] = 'r'; fields[#fields + 1] = retry end
if pid ~= '' then fields[#fields + 1] = 'p'; fields[#fields + 1] = pid end
if private == '1' then fields[#fields + 1] = 'x'; fields[#fields + 1] = '1' end
if alternates ~= '' then fields[#fields + 1] = 'a'; fields[#fields + 1] = alternates end
local sid = redis.call('XADD', stream, 'MAXLEN', maxlen, '*', unpack(fields))
if pid ~= '' then
  redis.call('HSET', pids, pid, sid)
  redis.call('ZADD', pidtimes, tonumber(string.match(sid, '^(%d+)')), pid)
end
if redis.call('ZCARD', pidtimes) > 0 then
  local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
  local below = '+inf'
  if first[1] then below = '(' .. string.match(first[1][1], '^(%d+)') end
  local gone = redis.call('ZRANGEBYSCORE', pidtimes, '-inf', below, 'LIMIT', 0, 100)
  if #gone > 0 then
    redis.call('HDEL', pids, unpack(gone))
    redis.call('ZREM', pidtimes, unpack(gone))
  end
end
return {'new', sid}
`;

/** Drops entries older than the age limit, by Redis's clock, which also stamped their ids. */
const TRIM_BY_AGE_SCRIPT = `
local now = redis.call('TIME')
return redis.call('XTRIM', KEYS[1], 'MINID', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[1]))
`;

type Fields = string[];
type Entry = [id: string, fields: Fields];

interface PublishCommand {
  heraldPublish(keys: [string, string, string], ...args: (string | number)[]): Promise<[string, string, Fields?]>;
  heraldTrimByAge(key: string, ttlMs: number): Promise<number>;
}

/** Stream ids `<ms>-<n>` as fixed-width strings, so that they compare as strings. */
function sidPos(sid: string): string {
  const dash = sid.indexOf("-");
  return `${sid.slice(0, dash).padStart(16, "0")}-${sid.slice(dash + 1).padStart(10, "0")}`;
}

/** The stream id of a position made by `sidPos`. */
function posSid(pos: string): string {
  const dash = pos.indexOf("-");
  const trim = (digits: string) => digits.replace(/^0+(?=\d)/, "");
  return `${trim(pos.slice(0, dash))}-${trim(pos.slice(dash + 1))}`;
}

function toStored(sid: string, fields: Fields): StoredEvent {
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i] as string] = fields[i + 1] as string;
  return {
    id: f.p ?? sid,
    topic: f.t ?? "",
    data: f.d ?? "",
    time: Number(sid.slice(0, sid.indexOf("-"))),
    pos: sidPos(sid),
    ...(f.e !== undefined && { event: f.e }),
    ...(f.r !== undefined && { retry: Number(f.r) }),
    ...(f.x === "1" && { private: true }),
    ...(f.a !== undefined && { alternates: JSON.parse(f.a) as string[] }),
  };
}

function unavailable(err: unknown): Error {
  if (err instanceof IdConflictError || err instanceof InvalidEventError) return err;
  return new BrokerUnavailableError(`Redis: ${(err as Error).message}`, { cause: err });
}

/**
 * History in one Redis Stream shared by every Herald node: one order for all topics, ids assigned
 * by Redis (`<ms>-<n>`, or the publisher's id), trimmed by size and age. Each node tails the stream
 * with XREAD on its own connection, so every node delivers every event in the same order.
 * While Redis is unreachable, publishes and replays fail fast with `BrokerUnavailableError` (no
 * offline queue, nothing buffered) and the reader resumes from its last id once Redis is back.
 * Needs a single Redis (or a primary with replicas), not Redis Cluster.
 */
export class RedisBroker implements Broker {
  readonly #commands: Redis & PublishCommand;
  readonly #reader: Redis;
  readonly #keys: [string, string, string];
  readonly #historySize: number;
  readonly #ttlMs: number;
  readonly #log: FastifyBaseLogger;
  readonly #listeners = new Listeners();
  /** The last stream id the reader delivered; undefined until it has read the stream's end once. */
  #lastId: string | undefined;
  #reading: Promise<void> | undefined;
  #closed = false;

  constructor(options: RedisBrokerOptions) {
    const common = { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0 };
    this.#commands = new Redis(options.url, { ...common, commandTimeout: COMMAND_TIMEOUT_MS }) as Redis &
      PublishCommand;
    this.#reader = new Redis(options.url, common);
    this.#commands.defineCommand("heraldPublish", { numberOfKeys: 3, lua: PUBLISH_SCRIPT });
    this.#commands.defineCommand("heraldTrimByAge", { numberOfKeys: 1, lua: TRIM_BY_AGE_SCRIPT });
    const p = options.prefix;
    this.#keys = [`${p}:events`, `${p}:ids`, `${p}:id-times`];
    this.#historySize = options.historySize;
    this.#ttlMs = (options.historyTtlS ?? 0) * 1000;
    this.#log = options.log;
    for (const [name, client] of [
      ["commands", this.#commands],
      ["reader", this.#reader],
    ] as const) {
      client.on("error", (err: Error) => this.#log.warn({ err, client: name }, "Redis connection error"));
    }
  }

  /** Connects; when Redis is down, starts anyway (unhealthy) and keeps trying in the background. */
  static async connect(options: RedisBrokerOptions): Promise<RedisBroker> {
    const broker = new RedisBroker(options);
    await Promise.all(
      [broker.#commands, broker.#reader].map((client) =>
        client.connect().catch((err: Error) => options.log.error({ err }, "Redis is unreachable; retrying")),
      ),
    );
    return broker;
  }

  async publish(input: EventInput): Promise<PublishResult> {
    if (input.id !== undefined && STREAM_ID.test(input.id)) {
      // Redis may assign this very id to a later event: it cannot belong to a publisher.
      throw new InvalidEventError(
        "id must not have the form <digits>-<digits>, which Herald keeps for the ids it assigns",
      );
    }
    let reply: [string, string, Fields?];
    try {
      reply = await this.#commands.heraldPublish(
        this.#keys,
        input.id ?? "",
        input.topic,
        input.event ?? "",
        input.data,
        input.retry === undefined ? "" : String(input.retry),
        this.#historySize,
        this.#ttlMs,
        input.private ? "1" : "",
        input.alternates === undefined ? "" : JSON.stringify(input.alternates),
      );
    } catch (err) {
      throw unavailable(err);
    }
    const [kind, sid, fields] = reply;
    if (kind === "new") {
      return {
        event: { ...input, id: input.id ?? sid, time: Number(sid.split("-")[0]), pos: sidPos(sid) },
        duplicate: false,
      };
    }
    const stored = toStored(sid, fields ?? []);
    if (!sameContent(stored, input)) throw new IdConflictError(JSON.stringify(input.id));
    return { event: stored, duplicate: true };
  }

  async subscribe(onEvent: (event: StoredEvent) => void): Promise<() => Promise<void>> {
    const unsubscribe = this.#listeners.add(onEvent);
    if (this.#reading === undefined) {
      // Know where the stream ends now, so that every later event reaches the listener.
      this.#lastId = await this.#streamEnd(this.#commands).catch(() => undefined);
      this.#reading = this.#readLoop();
    }
    return unsubscribe;
  }

  async locate(id: string): Promise<Location> {
    try {
      const [stream] = this.#keys;
      if (this.#ttlMs > 0) await this.#commands.heraldTrimByAge(stream, this.#ttlMs);
      const last = (await this.#commands.xrevrange(stream, "+", "-", "COUNT", 1)) as Entry[];
      const newest = last[0] && toStored(...last[0]);
      const head = newest && { id: newest.id, pos: newest.pos };
      if (id === EARLIEST_ID) return { found: true, pos: BEFORE_FIRST_POS, head };
      const sid = await this.#locate(id);
      return sid === undefined ? { found: false, head } : { found: true, pos: sidPos(sid), head };
    } catch (err) {
      throw unavailable(err);
    }
  }

  async read(afterPos: string, limit: number): Promise<StoredEvent[]> {
    try {
      const start = afterPos === BEFORE_FIRST_POS ? "-" : `(${posSid(afterPos)}`;
      const page = (await this.#commands.xrange(this.#keys[0], start, "+", "COUNT", limit)) as Entry[];
      return page.map(([sid, fields]) => toStored(sid, fields));
    } catch (err) {
      throw unavailable(err);
    }
  }

  status(): BrokerStatus {
    if (this.#commands.status === "ready" && this.#reader.status === "ready") return { ok: true };
    return { ok: false, detail: `Redis is unreachable (connection ${this.#commands.status})` };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#listeners.clear();
    this.#reader.disconnect();
    await this.#reading;
    await this.#commands.quit().catch(() => this.#commands.disconnect());
  }

  /** The stream id of an event id: a publisher's id through the id map, or a stream id that is still there. */
  async #locate(id: string): Promise<string | undefined> {
    const [stream, ids] = this.#keys;
    const sid = (await this.#commands.hget(ids, id)) ?? (STREAM_ID.test(id) ? id : undefined);
    if (sid === undefined) return undefined;
    try {
      const found = (await this.#commands.xrange(stream, sid, sid)) as Entry[];
      return found.length > 0 ? sid : undefined;
    } catch (err) {
      // A client's id of the right shape but out of range (digits beyond 64 bits): not in history.
      if ((err as Error).message.includes("Invalid stream ID")) return undefined;
      throw err;
    }
  }

  async #streamEnd(client: Redis): Promise<string> {
    const last = (await client.xrevrange(this.#keys[0], "+", "-", "COUNT", 1)) as Entry[];
    return last[0]?.[0] ?? "0-0";
  }

  /** Tails the stream from `#lastId` for as long as the broker is open, through Redis outages. */
  async #readLoop(): Promise<void> {
    let failures = 0;
    while (!this.#closed) {
      try {
        this.#lastId ??= await this.#streamEnd(this.#reader);
        const reply = (await this.#reader.xread(
          "COUNT",
          PAGE,
          "BLOCK",
          BLOCK_MS,
          "STREAMS",
          this.#keys[0],
          this.#lastId,
        )) as [string, Entry[]][] | null;
        failures = 0;
        for (const [, entries] of reply ?? []) {
          for (const [sid, fields] of entries) {
            this.#lastId = sid;
            const event = toStored(sid, fields);
            this.#listeners.emit(event);
          }
        }
      } catch (err) {
        if (this.#closed) return;
        failures++;
        if (failures === 1) this.#log.warn({ err }, "reading the Redis stream failed; retrying");
        await new Promise((resolve) => setTimeout(resolve, Math.min(1_000, 50 * failures)));
      }
    }
  }
}
