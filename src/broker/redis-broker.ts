import { randomBytes } from "node:crypto";
import type { FastifyBaseLogger } from "fastify";
import { Redis, type RedisOptions } from "ioredis";
import { BrokerUnavailableError, IdConflictError, IdRetiredError, InvalidEventError } from "../errors.js";
import {
  atItem,
  BEFORE_FIRST_POS,
  type Broker,
  type BrokerStatus,
  EARLIEST_ID,
  type EventInput,
  type Location,
  type PublishResult,
  retiredIdCapacity,
  type StoredEvent,
  storedEvent,
  unknownOutcome,
} from "./broker.js";
import { Listeners } from "./listeners.js";

/** Options for `RedisBroker`. */
export interface RedisBrokerOptions {
  /** A single Redis (or a fixed primary); not used when `sentinels` is given. */
  url: string;
  /** Sentinels that name the current primary of `masterName`: Herald follows it through failovers. */
  sentinels?: readonly { host: string; port: number }[];
  /** The primary's name in the Sentinels' configuration; needed with `sentinels`. */
  masterName?: string;
  /** A publish is acknowledged only once this many replicas hold it (Redis `WAIT`); 0 or absent does not wait. */
  waitReplicas?: number;
  /** How long a publish waits for `waitReplicas` replicas before answering 503. */
  waitTimeoutMs?: number;
  /** Prefix of every key this broker uses. */
  prefix: string;
  historySize: number;
  /** Events older than this many seconds leave history; 0 or absent keeps them. */
  historyTtlS?: number;
  log: FastifyBaseLogger;
}

/**
 * Liveness. A connection with a command in flight that receives nothing for this long is taken
 * for dead (a frozen link, a failover without a reset, a NAT drop): it is closed and opened
 * again, and its commands fail. A publish in flight then has an unknown outcome. (Herald keeps
 * its own timers: ioredis's `socketTimeout` leaves a timer behind a reconnect, which then
 * destroys the new connection.)
 */
const COMMAND_TIMEOUT_MS = 2_000;
/** The publishing connection sends a PING this often, so that it is checked while no one publishes. */
const PING_MS = 1_000;
/** The reader's XREAD blocks this long, then asks again; an answer is due by then, so a silent reader is dead. */
const BLOCK_MS = 2_000;
/**
 * The bound on noticing a dead connection: PING_MS + COMMAND_TIMEOUT_MS on the publishing
 * connection, BLOCK_MS + COMMAND_TIMEOUT_MS on the reader (README "Redis liveness").
 */
export const REDIS_LIVENESS_BOUND_MS = Math.max(PING_MS, BLOCK_MS) + COMMAND_TIMEOUT_MS;
/** TCP keepalive probes start after this much silence (the kernel's default is two hours). */
const KEEPALIVE_MS = 5_000;
/**
 * How many entries one XREAD round trip fetches: at least the largest batch (`MAX_BATCH_EVENTS`
 * allows 10,000) that is an entry per event (one with publisher ids), so that a batch reaches
 * listeners in one turn unless the reader lags behind.
 */
const PAGE = 10_000;
/**
 * How long a packed batch's events outlive its entry in Redis (see `PUBLISH_PACKED_SCRIPT`): a
 * reader fetches them right after it reads the entry, in the next round trip.
 */
const PACK_GRACE_MS = 10_000;
/**
 * At most this many single publishes go to Redis in one script call (see `RedisBroker#publish`):
 * a call keeps Redis's one thread to itself, and the reader fetches `PAGE` entries at a time.
 */
const MAX_SINGLES_PER_CALL = 1_000;

/** Why a packed batch's events can be missing while its entry is in the stream. */
const PACK_MISSING = `expired ${PACK_GRACE_MS} ms after the entry left history, or evicted: Herald needs maxmemory-policy noeviction`;
/** Entries in a stream have ids `<ms>-<n>`; Herald uses them as event ids. */
const STREAM_ID = /^\d+-\d+$/;

/**
 * The key of one publish's events without publisher id: 128 random bits as `<digits>-<digits>`,
 * the form publishers may not give their ids, so that it never names a publisher's event in the
 * key map. Its events' retry ids are `<key>.<j>` (j from 0, counting only those events).
 */
function drawKey(): string {
  // Random bytes drawn 256 keys at a time: a call to the generator per publish cost 2 µs, a tenth of that pooled.
  if (poolUsed + 16 > randomPool.length) {
    randomPool = randomBytes(4096);
    poolUsed = 0;
  }
  poolUsed += 16;
  return `${randomPool.readBigUInt64BE(poolUsed - 16)}-${randomPool.readBigUInt64BE(poolUsed - 8)}`;
}
let randomPool = Buffer.alloc(0);
let poolUsed = 0;

/**
 * What both publish scripts begin with: their keys (see `Keys`), the history limits (ARGV[1..3]), trimming by
 * age, and helpers, among them `trim` (by size, after writing) and `retireKeys` (see `PUBLISH_SCRIPT`).
 */
const SCRIPT_HEAD = `
local stream, keys, keytimes, seq, retired, packs = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
-- KEYS[7] is the prefix of the keys that hold packed events: KEYS[7] .. <drawn key>.
local packed = KEYS[7]
local maxlen, ttl, capacity = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
-- How long a pack outlives its entry, so that a reader that has just read the entry finds it.
local PACK_GRACE_MS = ${PACK_GRACE_MS}
if ttl > 0 then
  local now = redis.call('TIME')
  redis.call('XTRIM', stream, 'MINID', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - ttl)
end
-- Commands that take a list take it in slices: unpack puts a few thousand values on the stack at most.
local SLICE = 1000
local function sliced(command, key, list)
  for s = 1, #list, SLICE do redis.call(command, key, unpack(list, s, math.min(s + SLICE - 1, #list))) end
end
local function ms(sid) return string.sub(sid, 1, string.find(sid, '-', 1, true) - 1) end
-- A stream id's two numbers, and back (sequence numbers within one millisecond stay far below 2^53).
local function parts(sid)
  local m, s = string.match(sid, '^(%d+)%-(%d+)$')
  return m, tonumber(s)
end
local function sidAt(m, s) return m .. '-' .. string.format('%d', s) end
-- The packed entries (see PUBLISH_PACKED_SCRIPT) are indexed in 'packs' by their last event's
-- number, as "<entry id> <first number> <extra>": extra counts the events beyond one per entry in
-- this and every earlier packed entry, so that an event's number, less the extra before it, is
-- its entry's place in the stream.
local function indexed(member)
  local first, extra = string.match(member, ' (%d+) (%d+)$')
  return tonumber(first), tonumber(extra)
end
-- Keeps the newest maxlen events, and the rest of the entry that holds the oldest of them (a packed
-- entry leaves history whole): XTRIM MAXLEN with that entry's place counted from the newest end.
local function trim()
  local newest = redis.call('ZREVRANGE', packs, 0, 0)
  if not newest[1] then
    redis.call('XTRIM', stream, 'MAXLEN', ARGV[1])
    return
  end
  local last = tonumber(redis.call('GET', seq))
  local keep = last - maxlen + 1
  if keep <= 1 then return end
  local _, allExtra = indexed(newest[1])
  local total = last - allExtra
  local before = redis.call('ZREVRANGEBYSCORE', packs, string.format('(%d', keep), '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
  local extra = 0
  if before[1] then _, extra = indexed(before[1]) end
  local at = keep - extra
  local holding = redis.call('ZRANGEBYSCORE', packs, string.format('%d', keep), '+inf', 'LIMIT', 0, 1)
  if holding[1] then
    local first = indexed(holding[1])
    if first <= keep then at = first - extra end
  end
  redis.call('XTRIM', stream, 'MAXLEN', total - at + 1)
  -- Older packed entries are gone; the newest of them stays in the index for its extra.
  if before[1] then redis.call('ZREMRANGEBYSCORE', packs, '-inf', '(' .. before[2]) end
end
local function retireKeys(limit)
  local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
  local below = '+inf'
  if first[1] then below = '(' .. string.match(first[1][1], '^(%d+)') end
  local gone = redis.call('ZRANGEBYSCORE', keytimes, '-inf', below, 'WITHSCORES', 'LIMIT', 0, limit)
  if #gone > 0 then
    local names, scored, blobs = {}, {}, {}
    for j = 1, #gone, 2 do
      names[#names + 1] = gone[j]
      scored[#scored + 1] = gone[j + 1]
      scored[#scored + 1] = gone[j]
      -- A drawn key's packed events, if its publish was packed, go with it, a little later.
      if string.find(gone[j], '^%d+%-%d+$') then blobs[#blobs + 1] = packed .. gone[j] end
    end
    for _, blob in ipairs(blobs) do redis.call('PEXPIRE', blob, PACK_GRACE_MS) end
    sliced('HDEL', keys, names)
    -- The lowest-ranked members are the ones just listed: removed by rank, without looking each up.
    redis.call('ZREMRANGEBYRANK', keytimes, 0, #names - 1)
    sliced('ZADD', retired, scored)
    redis.call('ZREMRANGEBYRANK', retired, 0, -(capacity + 1))
  end
end
`;

/**
 * Appends a batch of events atomically (a single event is a batch of one). First, for every item
 * with a publisher's id: the idempotency check against history and the batch's earlier items, and
 * the check that the id has not left history (an id still mapped to a trimmed entry, or one in the
 * retired set). An id of the retry form `<drawn key>.<j>` that is not mapped itself names the j-th
 * event without publisher id of the earlier publish that drew that key (see `RedisBroker`): it is
 * that event when the key is mapped and the event is still there, refused when the key has left
 * history, and an ordinary new id when the key is unknown; the key is then marked (`<key>\n`,
 * mapped, timed and retired like a key), so that the publish that drew it, should it reach Redis
 * after its retry (held in a link that came back), gives its events without id their retry ids
 * and finds them stored, as a retry does. Any refusal answers {"conflict"|"retired", index}
 * before anything is written. Then each new item gets a sequence number `n` (one more than the
 * previous event's, so that a reader can tell it missed some) and is XADDed, trimming by size and
 * age. Items with a publisher's id are mapped one by one; the items
 * without share the one key Herald drew for the publish, mapped once to the stream ids of the
 * first and last of them. Last, keys whose events have left the stream (for a drawn key: its last
 * event) are forgotten (a bounded number per batch, or per 16 single events, so the key map stays
 * about as small as history) and go to the retired set, which keeps the newest `capacity`.
 * Answers {"ok", item...}, each item the new event's stream id, {"dup", id, fields} or
 * {"same", index of the batch's earlier item}.
 *
 * Per-event work is Redis's scarce resource (one thread for the whole cluster): an event without
 * publisher id costs an XADD and nothing else; ids are looked up, mapped and retired with one
 * command per slice of the batch rather than one per event, and the stream is trimmed once per
 * batch. Needs Redis 6.2 (ZMSCORE, XTRIM MINID).
 */
const PUBLISH_SCRIPT = `${SCRIPT_HEAD}
-- ARGV[4] names the arguments each item has, in order, one letter each: p the publisher's id, t
-- topic, e event, d data, r retry, x private ('1'), a alternates (JSON). A field it does not name
-- is empty in every item. ARGV[5] is the key drawn for the items without publisher id ('' if none).
local at = {}
for j = 1, #ARGV[4] do at[string.sub(ARGV[4], j, j)] = j end
local P, T, E, D, R, X, A = at.p, at.t, at.e, at.d, at.r, at.x, at.a
local drawn = ARGV[5]
local width = #ARGV[4]
local n = (#ARGV - 5) / width
-- Item i's arguments are ARGV[b + 1 .. b + width].
local function base(i) return 5 + (i - 1) * width end
local function field(b, j) if j then return ARGV[b + j] end return '' end
local function sameStored(fields, b)
  local f = {}
  for j = 1, #fields, 2 do f[fields[j]] = fields[j + 1] end
  local a = f['a'] or ''
  if a == '[]' then a = '' end
  return f['t'] == ARGV[b + T] and (f['e'] or '') == field(b, E) and f['d'] == ARGV[b + D]
    and (f['r'] or '') == field(b, R) and (f['x'] or '') == field(b, X) and a == field(b, A)
end
local function sameItems(a, b)
  for j = 1, width do
    if j ~= P and ARGV[a + j] ~= ARGV[b + j] then return false end
  end
  return true
end
-- A retry that reached Redis before this publish (held in a link that came back) stored its events
-- under their retry ids and marked the drawn key (see 'retried' below): this publish's events
-- without id then carry those ids, and are found stored. The mark's name, key .. LF, is one no
-- publisher's id can take.
local late = drawn ~= '' and (redis.call('HEXISTS', keys, drawn .. '\\n') == 1
  or redis.call('ZSCORE', retired, drawn .. '\\n') ~= false)
-- Each item's id: the publisher's, '' for the others (or their retry id when late).
local keyOf, unnamed = {}, 0
for i = 1, n do
  local key = field(base(i), P)
  if key == '' and late then
    key = drawn .. '.' .. unnamed
    unnamed = unnamed + 1
  end
  keyOf[i] = key
end
-- The stream id (false when not mapped) and retired score (false when not retired) of every
-- item's id; items without one are not looked up.
local owned = {}
for i = 1, n do if keyOf[i] ~= '' then owned[#owned + 1] = i end end
local mappedTo, retiredAt = {}, {}
for s = 1, #owned, SLICE do
  local names = {}
  for j = s, math.min(s + SLICE - 1, #owned) do names[#names + 1] = keyOf[owned[j]] end
  local sids = redis.call('HMGET', keys, unpack(names))
  local scores = redis.call('ZMSCORE', retired, unpack(names))
  for j = 1, #names do
    mappedTo[owned[s + j - 1]] = sids[j]
    retiredAt[owned[s + j - 1]] = scores[j]
  end
end
-- A retry id '<digits>-<digits>.<j>' (j without leading zeros): the drawn key and j.
local function retryOf(id)
  local key, j = string.match(id, '^(%d+%-%d+)%.(%d+)$')
  if key == nil or #j > 9 or (#j > 1 and string.sub(j, 1, 1) == '0') then return nil end
  return key, tonumber(j)
end
-- The entries without publisher id that the publish which drew 'key' wrote, in order ('retired'
-- when the key, or the first of them, has left history; false when the key is unknown). They are
-- adjacent in the stream, that publish being atomic, and the stream is only trimmed at its old end.
local drawnEntries = {}
local function entriesOf(key)
  local known = drawnEntries[key]
  if known ~= nil then return known end
  local range = redis.call('HGET', keys, key)
  if range then
    local first, last = string.match(range, '^(%S+) (%S+)$')
    local found = redis.call('XRANGE', stream, first, last)
    if #found == 0 or found[1][1] ~= first then
      known = 'retired'
    else
      known = {}
      for _, entry in ipairs(found) do
        local own, pack = false, nil
        for f = 1, #entry[2], 2 do
          if entry[2][f] == 'p' then own = true elseif entry[2][f] == 'k' then pack = entry[2][f + 1] end
        end
        if pack then
          -- A packed entry: its events, with their stream ids and fields, as if each had its own entry.
          local m, s = parts(entry[1])
          local json = redis.call('GET', packed .. pack)
          -- Its pack gone (evicted): its events can no longer be told apart from new ones.
          if not json then
            known = 'retired'
            break
          end
          for k, item in ipairs(cjson.decode(json)) do
            local fields = {'t', item.t, 'd', item.d}
            for _, name in ipairs({'e', 'r', 'x', 'a'}) do
              if item[name] then fields[#fields + 1] = name; fields[#fields + 1] = item[name] end
            end
            known[#known + 1] = {sidAt(m, s + k - 1), fields}
          end
        elseif not own then
          known[#known + 1] = entry
        end
      end
    end
  else
    known = redis.call('ZSCORE', retired, key) and 'retired'
  end
  drawnEntries[key] = known
  return known
end
-- Drawn keys unknown here whose retry ids name new events: marked, for their publish if it comes late.
local retried = {}
local plan, firstNew, fresh = {}, {}, 0
for i = 1, n do
  local b = base(i)
  local key = keyOf[i]
  local earlier = key ~= '' and firstNew[key]
  if key == '' then
    plan[i] = false
    fresh = fresh + 1
  elseif earlier then
    if not sameItems(base(earlier), b) then return {'conflict', i - 1} end
    plan[i] = earlier
  else
    local sid = mappedTo[i]
    local found = sid and redis.call('XRANGE', stream, sid, sid)
    if found and #found > 0 then
      if not sameStored(found[1][2], b) then return {'conflict', i - 1} end
      plan[i] = {'dup', sid, found[1][2]}
    elseif sid or retiredAt[i] then
      return {'retired', i - 1}
    else
      local drawnKey, j = retryOf(key)
      local entries = drawnKey and entriesOf(drawnKey)
      if entries == 'retired' then return {'retired', i - 1} end
      local entry = entries and entries[j + 1]
      if entry then
        if not sameStored(entry[2], b) then return {'conflict', i - 1} end
        plan[i] = {'dup', entry[1], entry[2]}
      else
        plan[i] = false
        firstNew[key] = i
        fresh = fresh + 1
        if entries == false then retried[i] = drawnKey end
      end
    end
  end
end
local out = {'ok'}
local number = 0
if fresh > 0 then number = redis.call('INCRBY', seq, fresh) - fresh end
local mapped, timed = {}, {}
local firstDrawn, lastDrawn
-- Drawn key → the time of the last event stored under one of its retry ids.
local marks = {}
for i = 1, n do
  local b, p = base(i), plan[i]
  if p == false then
    number = number + 1
    local key = keyOf[i]
    -- Formatted here as an integer: Redis formats a Lua number as a float, a measurable cost per event.
    local fields = {'t', ARGV[b + T], 'd', ARGV[b + D], 'n', string.format('%d', number)}
    if field(b, E) ~= '' then fields[#fields + 1] = 'e'; fields[#fields + 1] = ARGV[b + E] end
    if field(b, R) ~= '' then fields[#fields + 1] = 'r'; fields[#fields + 1] = ARGV[b + R] end
    if key ~= '' then fields[#fields + 1] = 'p'; fields[#fields + 1] = key end
    if field(b, X) == '1' then fields[#fields + 1] = 'x'; fields[#fields + 1] = '1' end
    if field(b, A) ~= '' then fields[#fields + 1] = 'a'; fields[#fields + 1] = ARGV[b + A] end
    -- Trimmed once below, after the whole batch: the same history as trimming at each XADD.
    local sid = redis.call('XADD', stream, '*', unpack(fields))
    if key ~= '' then
      mapped[#mapped + 1] = key
      mapped[#mapped + 1] = sid
      timed[#timed + 1] = ms(sid)
      timed[#timed + 1] = key
      if retried[i] then marks[retried[i]] = ms(sid) end
    else
      firstDrawn = firstDrawn or sid
      lastDrawn = sid
    end
    out[i + 1] = sid
  elseif type(p) == 'number' then
    out[i + 1] = {'same', p - 1}
  else
    out[i + 1] = p
  end
end
if fresh > 0 then
  trim()
  if lastDrawn and drawn ~= '' then
    -- Retired by the time of its last entry: while any of them is in the stream, the key is mapped.
    mapped[#mapped + 1] = drawn
    mapped[#mapped + 1] = firstDrawn .. ' ' .. lastDrawn
    timed[#timed + 1] = ms(lastDrawn)
    timed[#timed + 1] = drawn
  end
  for key, time in pairs(marks) do
    mapped[#mapped + 1] = key .. '\\n'
    mapped[#mapped + 1] = 'retried'
    timed[#timed + 1] = time
    timed[#timed + 1] = key .. '\\n'
  end
  sliced('HSET', keys, mapped)
  sliced('ZADD', keytimes, timed)
end
-- A single publish retires keys once per 16 events (its numbers crossing a multiple of 16), which
-- keeps up with one key per event at a sixteenth of the cost (its lookup of the stream's first
-- entry walks the entries trimmed from that node). A key whose entry has left history but is not
-- retired yet is refused as retired all the same (its entry is not found), and \`locate\` checks
-- that an entry is still there.
if n > 1 or (fresh > 0 and number % 16 < fresh) then retireKeys(100 + 2 * n) end
return out
`;

/**
 * Appends a batch whose events all lack a publisher id as one packed entry, with fields `n` (the
 * number of its first event), `c` (how many) and `k` (the publish's drawn key, ARGV[4]). The events
 * themselves, its pack, go to the string key KEYS[7] .. <drawn key>: ARGV[6], JSON from Herald, an
 * array of objects with the fields t, d and, when set, e, r, x, a, as in an entry of its own.
 * Redis never parses it, and the entry stays small for every command that reads entries (XRANGE,
 * XREVRANGE, XREAD). When its drawn key retires (`retireKeys`), after its entry has left history,
 * the pack expires `PACK_GRACE_MS` later: a reader that read the entry just before has that long
 * to fetch the pack (see `RedisBroker#packs`). With an age limit (ttl), it expires by then at the
 * latest, trimmed or not, so that trimming by age alone frees it too. The events
 * take the `c` (ARGV[5]) consecutive stream ids that start at the entry's own: the script moves
 * the stream's last id (XSETID) past them, so that no later entry takes one. One XADD and a few
 * bookkeeping commands, whatever the batch's size: nothing per event. The drawn key is mapped to
 * "<entry> <entry>" as in `PUBLISH_SCRIPT`. Answers {"ok", entry id}, or {"late"} when a retry of
 * this publish reached Redis first (its key is marked; nothing is written): the caller then sends
 * the batch through `PUBLISH_SCRIPT`, which finds its events.
 */
const PUBLISH_PACKED_SCRIPT = `${SCRIPT_HEAD}
local drawn, count = ARGV[4], tonumber(ARGV[5])
if redis.call('HEXISTS', keys, drawn .. '\\n') == 1 or redis.call('ZSCORE', retired, drawn .. '\\n') then
  return {'late'}
end
-- With an age limit, no event of the batch outlives ttl: nor need its pack, beyond the grace.
if ttl > 0 then
  redis.call('SET', packed .. drawn, ARGV[6], 'PX', ttl + PACK_GRACE_MS)
else
  redis.call('SET', packed .. drawn, ARGV[6])
end
local number = redis.call('INCRBY', seq, count) - count + 1
local sid = redis.call('XADD', stream, '*', 'n', number, 'c', count, 'k', drawn)
local m, s = parts(sid)
redis.call('XSETID', stream, sidAt(m, s + count - 1))
local newest = redis.call('ZREVRANGE', packs, 0, 0)
local extra = count - 1
if newest[1] then
  local _, earlier = indexed(newest[1])
  extra = extra + earlier
end
redis.call('ZADD', packs, number + count - 1, string.format('%s %d %d', sid, number, extra))
redis.call('HSET', keys, drawn, sid .. ' ' .. sid)
redis.call('ZADD', keytimes, m, drawn)
trim()
-- Like PUBLISH_SCRIPT: more keys retire per call than it adds, whatever the backlog.
retireKeys(100 + 2 * count)
return {'ok', sid}
`;

/** Drops entries older than the age limit, by Redis's clock, which also stamped their ids. */
const TRIM_BY_AGE_SCRIPT = `
local now = redis.call('TIME')
return redis.call('XTRIM', KEYS[1], 'MINID', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[1]))
`;

type Fields = string[];
/**
 * The stream; the key map (publisher's id → stream id, drawn key → "<first> <last>" ids of the
 * entries of its publish's events without publisher id, drawn key + LF → "retried"); its index by
 * time; the sequence counter; the keys that left history; the packed entries by their last number;
 * the prefix of the keys that hold packed events (`<prefix>:pack:<drawn key>`).
 */
type Keys = [
  stream: string,
  keys: string,
  keyTimes: string,
  seq: string,
  retired: string,
  packs: string,
  packed: string,
];
type Entry = [id: string, fields: Fields];
/** What `PUBLISH_SCRIPT` answers for one item of a batch. */
type ItemReply = string | ["dup", string, Fields] | ["same", number];
type PublishReply = ["ok", ...ItemReply[]] | ["conflict" | "retired", number];
type PackedReply = ["ok", string] | ["late"];

interface PublishCommand {
  /** `args` as one array: ioredis flattens it, where spreading thousands of arguments into the call costs more. */
  heraldPublish(keys: Keys, args: (string | number)[]): Promise<PublishReply>;
  heraldPublishPacked(keys: Keys, args: (string | number)[]): Promise<PackedReply>;
  heraldTrimByAge(key: string, ttlMs: number): Promise<number>;
}

/**
 * An event as Redis holds it: the fields of its own entry, or an item of a packed entry's JSON
 * (see `PUBLISH_PACKED_SCRIPT`), with the same names: t topic, d data, e event, r retry, x private
 * ("1"), a alternates (JSON), p the publisher's id (entries of their own only).
 */
interface Item {
  t: string;
  d: string;
  e?: string;
  r?: string;
  x?: string;
  a?: string;
  p?: string;
}

function packItem(input: EventInput): Item {
  const item: Item = { t: input.topic, d: input.data };
  if (input.event !== undefined) item.e = input.event;
  if (input.retry !== undefined) item.r = String(input.retry);
  if (input.private) item.x = "1";
  if (input.alternates?.length) item.a = JSON.stringify(input.alternates);
  return item;
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

/** The stream id `count` after `sid`, in the same millisecond (the ids of a packed entry's events). */
function sidAfter(sid: string, count: number): string {
  const dash = sid.indexOf("-");
  return `${sid.slice(0, dash + 1)}${Number(sid.slice(dash + 1)) + count}`;
}

/**
 * Calls `each` with the stream id, position and time of `count` consecutive events from `sid` on
 * (a packed entry's, all in one millisecond), formatting the millisecond once.
 */
function eachSid(sid: string, count: number, each: (sid: string, pos: string, time: number, k: number) => void): void {
  const dash = sid.indexOf("-");
  const ms = sid.slice(0, dash);
  const time = Number(ms);
  const prefix = `${ms.padStart(16, "0")}-`;
  const first = Number(sid.slice(dash + 1));
  for (let k = 0; k < count; k++) {
    const seq = String(first + k);
    each(`${ms}-${seq}`, prefix + seq.padStart(10, "0"), time, k);
  }
}

function fromItem(item: Item, sid: string, time: number, pos: string): StoredEvent {
  // Built field by field: the reader makes one of these per event it reads, on every node.
  const stored: { -readonly [K in keyof StoredEvent]: StoredEvent[K] } = {
    id: item.p ?? sid,
    topic: item.t,
    data: item.d,
    time,
    pos,
  };
  if (item.e !== undefined) stored.event = item.e;
  if (item.r !== undefined) stored.retry = Number(item.r);
  if (item.x === "1") stored.private = true;
  if (item.a !== undefined) stored.alternates = JSON.parse(item.a) as string[];
  return stored;
}

/** An entry's event as an item (see `Item`); for a packed entry, its drawn key `k` too. */
function itemOf(fields: Fields): Item & { k?: string } {
  const item: Item & { k?: string } = { t: "", d: "" };
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i] as string;
    if (name.length === 1 && "tdearxpk".includes(name)) item[name as keyof Item | "k"] = fields[i + 1] as string;
  }
  return item;
}

function toStored(sid: string, fields: Fields): StoredEvent {
  return fromItem(itemOf(fields), sid, Number(sid.slice(0, sid.indexOf("-"))), sidPos(sid));
}

/** The drawn key of a packed entry, which names the key that holds its events; undefined for an event's own entry. */
function packOf(fields: Fields): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === "k") return fields[i + 1];
  return undefined;
}

/**
 * Calls `each` with the events an entry holds, oldest first: itself, or for a packed entry the
 * items of its pack, from the `skip`-th on and `take` of them at most.
 */
function forEachEvent(
  sid: string,
  fields: Fields,
  items: readonly Item[] | undefined,
  each: (event: StoredEvent) => void,
  skip = 0,
  take = Number.POSITIVE_INFINITY,
): void {
  if (items === undefined) {
    each(toStored(sid, fields));
    return;
  }
  const count = Math.min(take, items.length - skip);
  eachSid(sidAfter(sid, skip), count, (id, pos, time, k) => each(fromItem(items[skip + k] as Item, id, time, pos)));
}

/**
 * The numbers of an entry's first and last events (absent on entries written by versions before
 * sequence numbers); a packed entry's `c` says how many it holds.
 */
function numbersOf(fields: Fields): { first: number; last: number } | undefined {
  let first: number | undefined;
  let count = 1;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === "n") first = Number(fields[i + 1]);
    else if (fields[i] === "c") count = Number(fields[i + 1]);
  }
  return first === undefined ? undefined : { first, last: first + count - 1 };
}

/** How many events an entry with these numbers holds (one, for an entry without numbers). */
function countIn(numbers: ReturnType<typeof numbersOf>): number {
  return numbers === undefined ? 1 : numbers.last - numbers.first + 1;
}

/** The id and position of the newest event of `entry`. */
function newestOf(entry: Entry): { id: string; pos: string } {
  const sid = lastSid(entry);
  const item = itemOf(entry[1]);
  return { id: item.k === undefined ? (item.p ?? sid) : sid, pos: sidPos(sid) };
}

/** How many of an entry's events come after `afterPos` (all of them, but in the entry that holds it). */
function countAfter([sid, fields]: Entry, afterPos: string): number {
  const count = countIn(numbersOf(fields));
  if (sidPos(sid) > afterPos) return count;
  if (count === 1) return 0;
  // An entry at or before the position: its events share its millisecond, and their sequence numbers follow.
  const after = posSid(afterPos);
  const dash = after.indexOf("-");
  if (after.slice(0, dash) !== sid.slice(0, sid.indexOf("-"))) return 0;
  const held = Number(after.slice(dash + 1)) - Number(sid.slice(sid.indexOf("-") + 1)) + 1;
  return Math.max(0, count - held);
}

/** The stream id of an entry's last event: its own, or for a packed entry that of its last event. */
function lastSid(entry: Entry): string {
  const numbers = numbersOf(entry[1]);
  return numbers === undefined ? entry[0] : sidAfter(entry[0], numbers.last - numbers.first);
}

/**
 * ioredis fails a command that it never wrote with one of these: the command did not reach
 * Redis, so nothing was stored. Any other failure of a written command leaves the outcome open.
 */
const NOT_SENT = ["Stream isn't writeable", "Connection is closed"];

function unavailable(err: unknown): Error {
  if (err instanceof IdConflictError || err instanceof InvalidEventError || err instanceof BrokerUnavailableError) {
    return err;
  }
  if ((err as Error).name === "ReplyError") {
    // Redis answered and refused (READONLY on a demoted primary, OOM): nothing was written.
    return new BrokerUnavailableError(`Redis refused the write: ${(err as Error).message}`, { cause: err });
  }
  return new BrokerUnavailableError("Redis is unreachable", { cause: err });
}

/**
 * The id each item's retry must carry, for an unknown outcome only: the publisher's, or
 * `<drawn>.<j>` for the j-th item without one.
 */
function retryIds(inputs: readonly EventInput[], drawn: string): string[] {
  let unnamed = 0;
  return inputs.map((input) => input.id ?? `${drawn}.${unnamed++}`);
}

/**
 * How a publish was asked for: one event, a batch (all or nothing), or single events sent together
 * (see `RedisBroker#publish`), each with its own result.
 */
type PublishKind = "single" | "batch" | "singles";

/** A single event waiting to be sent with others (see `RedisBroker#publish`). */
interface Waiting {
  input: EventInput;
  resolve: (result: PublishResult) => void;
  reject: (err: unknown) => void;
}

/** Single events sent together failed each with its own error: `errors[k]` is event k's. */
class EachItem extends Error {
  constructor(readonly errors: readonly Error[]) {
    super("each event failed with its own error");
  }
}

/** A publish that may or may not be stored: each of singles sent together names its own retry id. */
function unknownFor(
  reason: string,
  inputs: readonly EventInput[],
  drawn: string,
  kind: PublishKind,
  options?: { cause: unknown },
): Error {
  const ids = retryIds(inputs, drawn);
  if (kind !== "singles") return unknownOutcome(reason, ids, kind === "batch", options);
  return new EachItem(ids.map((id) => unknownOutcome(reason, [id], false, options)));
}

/** A written command that failed without an answer: nobody knows whether Redis ran it. */
function outcomeUnknown(err: unknown, inputs: readonly EventInput[], drawn: string, kind: PublishKind): Error {
  const message = (err as Error).message;
  if ((err as Error).name === "ReplyError" || NOT_SENT.some((m) => message.startsWith(m))) return unavailable(err);
  return unknownFor("The connection to Redis failed after the event was sent", inputs, drawn, kind, { cause: err });
}

/** Short words for a connection failure, for the one log line an outage gets. */
function describe(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ECONNREFUSED") return "connection refused";
  if (code === "ECONNRESET" || code === "EPIPE") return "connection reset";
  return err.message;
}

/**
 * History in one Redis Stream shared by every Herald node: one order for all topics, ids assigned
 * by Redis (`<ms>-<n>`, or the publisher's id), trimmed by size and age. An entry is one event, or
 * a whole batch without publisher ids (see `PUBLISH_PACKED_SCRIPT`), which holds consecutive ids;
 * single publishes of one turn share a script call, an entry each (see `publish`). Each node tails the stream
 * with XREAD on its own connection, so every node delivers every event in the same order.
 * While Redis is unreachable, publishes and replays fail fast with `BrokerUnavailableError` (no
 * offline queue, nothing buffered) and the reader resumes from its last id once Redis is back.
 * A connection that stops answering is noticed within `REDIS_LIVENESS_BOUND_MS` and reopened; a
 * publish caught in it fails with `PublishOutcomeUnknownError`, which names the id that makes its
 * retry safe: the publisher's id, or for an event without one `<key>.<j>`, where `<key>` is drawn
 * once per publish (see `drawKey`) and j counts the publish's events without id from 0. Redis maps
 * that key once for the whole publish, so such events cost no per-event bookkeeping; a retry with
 * `<key>.<j>` is the publish's j-th such event while the key is mapped, is refused as retired once
 * the first of them has left history (their places can no longer be counted), and is a new event
 * with that id when the key is unknown (the first try never reached Redis). When the reader finds
 * that it missed events (trimmed while it lagged, or lost in a failover), it tells its `onGap`
 * listeners. With Sentinels it follows the primary through failovers. Needs a single Redis (or a
 * primary with replicas), not Redis Cluster.
 */
export class RedisBroker implements Broker {
  readonly #commands: Redis & PublishCommand;
  readonly #reader: Redis;
  readonly #keys: Keys;
  readonly #historySize: number;
  readonly #retiredCapacity: number;
  readonly #ttlMs: number;
  readonly #waitReplicas: number;
  readonly #waitTimeoutMs: number;
  readonly #log: FastifyBaseLogger;
  readonly #target: string;
  readonly #listeners = new Listeners();
  readonly #gapListeners = new Set<() => void>();
  readonly #ping: NodeJS.Timeout;
  /** How long the publishing connection may stay silent with a command in flight. */
  readonly #silenceMs: number;
  /** When the publishing connection last answered; when the PING in flight was sent. */
  #answeredAt = Date.now();
  #pingSentAt: number | undefined;
  /** When each connection's handshake began, while it is under way. */
  readonly #handshakes = new Map<Redis, number>();
  /** The id of the last entry the reader delivered; undefined until it has read the stream's end once. */
  #lastId: string | undefined;
  /** The number of that entry's last event, when it has one. */
  #lastSeq: number | undefined;
  /**
   * The entries the reader delivered last, oldest first, as a ring of `PAGE` slots: each entry's
   * stream id, its event count, and its publisher id ("" for none). A failover can lose the newest
   * of them (see `#markLost`).
   */
  readonly #recent = { sids: new Array<string>(PAGE), counts: new Array<number>(PAGE), ids: new Array<string>(PAGE) };
  #recentNext = 0;
  #recentSize = 0;
  /** Single events without publisher id waiting for the end of this turn (see `publish`). */
  #unnamed: Waiting[] = [];
  /**
   * What the last failover lost of what this node had delivered: from `from` to `to` (positions),
   * and the publisher ids among them. A client whose last event is one of them resumes after
   * `resumePos`, the newest event that survived, in the entry `resumeSid` (see `locate`); when
   * none of what the node remembers survived (Redis lost its data), it gets a `reset`.
   */
  #failedOver: { from: string; to: string; ids: Set<string>; resume?: { pos: string; sid: string } } | undefined;
  /** The pack a replay fetched last, for the next page (see `#packs`). */
  #keptPack: { key: string; items: Item[] } | undefined;
  /**
   * Set when the reader loses its connection, until it has checked its position against what Redis
   * holds on its return (a check that fails is tried again): a failover may have lost what it
   * delivered, and `locate` must not answer before it knows what.
   */
  #positionUnchecked = false;
  #reading: Promise<void> | undefined;
  /** Why Redis is unusable, since when; undefined while it is fine. */
  #down: { reason: string; since: number } | undefined;
  #closed = false;

  constructor(options: RedisBrokerOptions) {
    const common: RedisOptions = {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      keepAlive: KEEPALIVE_MS,
      // A demoted primary answers READONLY: reconnect, and the Sentinels name the new one.
      reconnectOnError: (err) => err.message.startsWith("READONLY"),
    };
    const sentinels = options.sentinels ?? [];
    const where: RedisOptions =
      sentinels.length > 0 ? { sentinels: [...sentinels], name: options.masterName ?? "" } : {};
    const connect = (extra: RedisOptions) =>
      sentinels.length > 0
        ? new Redis({ ...common, ...where, ...extra })
        : new Redis(options.url, { ...common, ...extra });
    this.#waitReplicas = options.waitReplicas ?? 0;
    this.#waitTimeoutMs = options.waitTimeoutMs ?? 1_000;
    // WAIT holds the answers of this connection for up to its timeout: only silence beyond it is death.
    const waitMs = this.#waitReplicas > 0 ? this.#waitTimeoutMs : 0;
    this.#silenceMs = COMMAND_TIMEOUT_MS + waitMs;
    this.#commands = connect({}) as Redis & PublishCommand;
    this.#reader = connect({});
    this.#commands.defineCommand("heraldPublish", { numberOfKeys: 7, lua: PUBLISH_SCRIPT });
    this.#commands.defineCommand("heraldPublishPacked", { numberOfKeys: 7, lua: PUBLISH_PACKED_SCRIPT });
    this.#commands.defineCommand("heraldTrimByAge", { numberOfKeys: 1, lua: TRIM_BY_AGE_SCRIPT });
    const p = options.prefix;
    this.#keys = [`${p}:events`, `${p}:ids`, `${p}:id-times`, `${p}:seq`, `${p}:retired`, `${p}:packs`, `${p}:pack:`];
    this.#historySize = options.historySize;
    this.#retiredCapacity = retiredIdCapacity(options.historySize);
    this.#ttlMs = (options.historyTtlS ?? 0) * 1000;
    this.#log = options.log;
    this.#target =
      sentinels.length > 0
        ? `the primary "${options.masterName}" of the Sentinels ${sentinels.map((s) => `${s.host}:${s.port}`).join(",")}`
        : `Redis at ${redactUrl(options.url)}`;
    for (const client of [this.#commands, this.#reader]) {
      // One line when Redis goes, one when it is back: not one per reconnect attempt.
      client.on("error", (err: Error) => this.#lost(describe(err), err));
      client.on("close", () => this.#lost("connection closed"));
      client.on("ready", () => this.#ready());
      client.on("connect", () => this.#handshakes.set(client, Date.now()));
      // ioredis gives up for good ("end") when a Sentinel lookup is cut short; Herald never does.
      client.on("end", () => {
        if (!this.#closed) setTimeout(() => this.#closed || client.connect().catch(() => {}), PING_MS).unref();
      });
    }
    this.#reader.on("close", () => {
      if (this.#lastId !== undefined) this.#positionUnchecked = true;
    });
    this.#ping = setInterval(() => this.#checkCommands(), PING_MS);
    this.#ping.unref();
  }

  /**
   * Connects; when Redis is down, or does not answer within `COMMAND_TIMEOUT_MS` (Sentinels that
   * cannot be reached make ioredis try them again and again), starts anyway (unhealthy) and keeps
   * trying in the background.
   */
  static async connect(options: RedisBrokerOptions): Promise<RedisBroker> {
    const broker = new RedisBroker(options);
    await Promise.all(
      [broker.#commands, broker.#reader].map((client) => {
        const connecting = client.connect().catch((err: Error) => broker.#lost(describe(err), err));
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<void>((resolve) => {
          timer = setTimeout(resolve, COMMAND_TIMEOUT_MS);
        });
        return Promise.race([connecting, late]).finally(() => clearTimeout(timer));
      }),
    );
    return broker;
  }

  /**
   * Single events without publisher id that arrive in one turn of the event loop go to Redis
   * together, up to `MAX_SINGLES_PER_CALL` at a time, as one publish of several events (one script
   * call): Redis's one thread, and this process, pay per call rather than per event. Each is an
   * entry of its own, as a lone single is (not a packed entry: a late first try must still store
   * the events of the callers that did not retry, and a node of an earlier version must still read
   * them). Each gets its own result, and an unknown outcome names its own retry id. An event with
   * a publisher id (which Redis may refuse alone) and a batch are sent at once, after the events
   * waiting: publishes reach Redis in the order of the calls.
   */
  async publish(input: EventInput): Promise<PublishResult> {
    if (input.id !== undefined) {
      this.#sendUnnamed();
      return (await this.#publish([input], "single"))[0] as PublishResult;
    }
    return new Promise((resolve, reject) => {
      const waiting = this.#unnamed.push({ input, resolve, reject });
      if (waiting === MAX_SINGLES_PER_CALL) this.#sendUnnamed();
      else if (waiting === 1) setImmediate(() => this.#sendUnnamed());
    });
  }

  publishBatch(inputs: readonly EventInput[]): Promise<PublishResult[]> {
    this.#sendUnnamed();
    return this.#publish(inputs, "batch");
  }

  /** Sends the single events waiting (see `publish`), if any. */
  #sendUnnamed(): void {
    const waiting = this.#unnamed;
    if (waiting.length === 0) return;
    this.#unnamed = [];
    this.#publish(
      waiting.map((w) => w.input),
      "singles",
    ).then(
      (results) => {
        for (const [k, w] of waiting.entries()) w.resolve(results[k] as PublishResult);
      },
      (err) => {
        for (const [k, w] of waiting.entries()) w.reject(err instanceof EachItem ? err.errors[k] : err);
      },
    );
  }

  /**
   * Publishes `inputs` in one script call, which Redis runs before any later call. Sends the call
   * before it first awaits. A batch's unknown outcome names the ids of all its events; singles
   * sent together fail each with its own error (`EachItem`).
   */
  async #publish(inputs: readonly EventInput[], kind: PublishKind): Promise<PublishResult[]> {
    if (inputs.length === 0) return [];
    // Each item carries only the fields some item of the batch has (the script's ARGV[4]): fewer
    // arguments to encode here, and to parse and hold in Redis, which does it on its one thread.
    let ids = 0;
    let events = false;
    let retries = false;
    let privates = false;
    let alternates = false;
    for (const [index, input] of inputs.entries()) {
      if (input.id !== undefined) {
        if (STREAM_ID.test(input.id)) {
          // Redis may assign this very id to a later event: it cannot belong to a publisher.
          throw atItem(
            new InvalidEventError(
              "id must not have the form <digits>-<digits>, which Herald keeps for the ids it assigns",
            ),
            index,
          );
        }
        ids++;
      }
      events ||= input.event !== undefined;
      retries ||= input.retry !== undefined;
      privates ||= input.private === true;
      alternates ||= (input.alternates?.length ?? 0) > 0;
    }
    const shape = `${ids > 0 ? "p" : ""}t${events ? "e" : ""}d${retries ? "r" : ""}${privates ? "x" : ""}${alternates ? "a" : ""}`;
    // Drawn before sending, so that a publish whose outcome is unknown can be retried safely.
    const drawn = ids < inputs.length ? drawKey() : "";
    const limits = [this.#historySize, this.#ttlMs, this.#retiredCapacity];
    if (ids === 0 && inputs.length > 1 && kind === "batch") {
      const pack = JSON.stringify(inputs.map(packItem));
      const { reply, replicas } = await this.#send(
        this.#commands.heraldPublishPacked(this.#keys, [...limits, drawn, inputs.length, pack]),
        inputs,
        drawn,
        kind,
      );
      if (reply[0] === "ok") {
        this.#confirm(replicas, inputs, drawn, kind);
        const results: PublishResult[] = [];
        eachSid(reply[1], inputs.length, (id, pos, time, k) => {
          results.push({ event: storedEvent(inputs[k] as EventInput, id, time, pos), duplicate: false });
        });
        return results;
      }
      // "late": a retry of this publish reached Redis first; the full script finds its events.
    }
    const args: (string | number)[] = [...limits, shape, drawn];
    for (const input of inputs) {
      if (ids > 0) args.push(input.id ?? "");
      args.push(input.topic);
      if (events) args.push(input.event ?? "");
      args.push(input.data);
      if (retries) args.push(input.retry === undefined ? "" : String(input.retry));
      if (privates) args.push(input.private ? "1" : "");
      if (alternates) args.push(input.alternates?.length ? JSON.stringify(input.alternates) : "");
    }
    const { reply, replicas } = await this.#send(this.#commands.heraldPublish(this.#keys, args), inputs, drawn, kind);
    if (reply[0] !== "ok") {
      const index = reply[1] as number;
      // Only an item with a publisher's id can be refused.
      const id = JSON.stringify(inputs[index]?.id);
      throw atItem(reply[0] === "conflict" ? new IdConflictError(id) : new IdRetiredError(id), index);
    }
    this.#confirm(replicas, inputs, drawn, kind);
    const results: PublishResult[] = [];
    for (let index = 0; index < inputs.length; index++) {
      const input = inputs[index] as EventInput;
      const item = reply[index + 1] as ItemReply;
      if (typeof item === "string") {
        const event = storedEvent(input, input.id ?? item, Number(item.slice(0, item.indexOf("-"))), sidPos(item));
        results.push({ event, duplicate: false });
      } else if (item[0] === "dup") {
        results.push({ event: toStored(item[1], item[2]), duplicate: true });
      } else {
        results.push({ event: (results[item[1]] as PublishResult).event, duplicate: true });
      }
    }
    return results;
  }

  /**
   * Awaits a publish script's reply and, with `waitReplicas`, the WAIT sent right behind it on the
   * same connection (it counts the replicas that hold the script's writes).
   */
  async #send<T>(
    publishing: Promise<T>,
    inputs: readonly EventInput[],
    drawn: string,
    kind: PublishKind,
  ): Promise<{ reply: T; replicas: number | undefined }> {
    const waiting = this.#waitReplicas > 0 ? this.#commands.wait(this.#waitReplicas, this.#waitTimeoutMs) : undefined;
    waiting?.catch(() => {});
    try {
      const reply = await publishing;
      this.#answeredAt = Date.now();
      const replicas = await waiting;
      this.#answeredAt = Date.now();
      return { reply, replicas };
    } catch (err) {
      throw outcomeUnknown(err, inputs, drawn, kind);
    }
  }

  /** Fails a publish that fewer replicas than `waitReplicas` confirmed: its outcome is unknown. */
  #confirm(replicas: number | undefined, inputs: readonly EventInput[], drawn: string, kind: PublishKind): void {
    if (replicas !== undefined && replicas < this.#waitReplicas) {
      throw unknownFor(
        `Only ${replicas} of the ${this.#waitReplicas} replicas that REDIS_WAIT_REPLICAS asks for confirmed the ${kind === "batch" ? "events" : "event"} within REDIS_WAIT_TIMEOUT_MS (${this.#waitTimeoutMs} ms)`,
        inputs,
        drawn,
        kind,
      );
    }
  }

  async subscribe(onEvent: (event: StoredEvent) => void, onGap?: () => void): Promise<() => Promise<void>> {
    const unsubscribe = this.#listeners.add(onEvent);
    const gap = onGap && (() => onGap());
    if (gap) this.#gapListeners.add(gap);
    if (this.#reading === undefined) {
      // Know where the stream ends now, so that every later event reaches the listener.
      await this.#streamEnd(this.#commands).catch(() => undefined);
      this.#reading = this.#readLoop();
    }
    return async () => {
      if (gap) this.#gapListeners.delete(gap);
      await unsubscribe();
    };
  }

  async locate(id: string): Promise<Location> {
    try {
      const [stream] = this.#keys;
      if (this.#ttlMs > 0) await this.#commands.heraldTrimByAge(stream, this.#ttlMs);
      const last = (await this.#commands.xrevrange(stream, "+", "-", "COUNT", 1)) as Entry[];
      const head = last[0] && newestOf(last[0]);
      if (id === EARLIEST_ID) return { found: true, pos: BEFORE_FIRST_POS, head };
      if (this.#positionUnchecked) {
        throw new BrokerUnavailableError(
          "Redis is back, but this node has not yet checked what a failover may have lost",
        );
      }
      // An event this node delivered that a failover then lost (a retry may have stored it again,
      // later): its client resumes after the newest event that survived, and misses nothing.
      const lost = this.#failedOver;
      if (
        lost !== undefined &&
        (lost.ids.has(id) || (STREAM_ID.test(id) && sidPos(id) >= lost.from && sidPos(id) <= lost.to))
      ) {
        // Unless trimming has since taken that event: then what followed it may be gone too.
        const { resume } = lost;
        if (resume === undefined || (await this.#commands.xrange(stream, resume.sid, resume.sid)).length === 0) {
          return { found: false, head };
        }
        return { found: true, pos: resume.pos, head };
      }
      const sid = await this.#locate(id);
      return sid === undefined ? { found: false, head } : { found: true, pos: sidPos(sid), head };
    } catch (err) {
      throw unavailable(err);
    }
  }

  async read(afterPos: string, limit: number): Promise<StoredEvent[]> {
    try {
      // A pack that is gone expired after its entry left history: read again, without that entry.
      for (let attempt = 1; ; attempt++) {
        const events = await this.#readOnce(afterPos, limit);
        if (events !== undefined) return events;
        if (attempt === 3)
          throw new BrokerUnavailableError(`a packed batch's events are missing from Redis: ${PACK_MISSING}`);
      }
    } catch (err) {
      throw unavailable(err);
    }
  }

  /** One `read`; undefined when a pack it needed was gone. */
  async #readOnce(afterPos: string, limit: number): Promise<StoredEvent[] | undefined> {
    const [stream] = this.#keys;
    let entries: Entry[];
    if (afterPos === BEFORE_FIRST_POS) {
      entries = (await this.#commands.xrange(stream, "-", "+", "COUNT", limit)) as Entry[];
    } else {
      // The entry that holds the position (a packed one may hold later events too), and those after it.
      const after = posSid(afterPos);
      const replies = await this.#commands
        .multi()
        .xrevrange(stream, after, "-", "COUNT", 1)
        .xrange(stream, `(${after}`, "+", "COUNT", limit)
        .exec();
      const [[e1, holding], [e2, later]] = replies as [[Error | null, Entry[]], [Error | null, Entry[]]];
      if (e1 || e2) throw e1 ?? e2;
      entries = [...holding, ...later];
    }
    // Only the entries that hold the page's events: a packed one may hold thousands.
    const needed: Entry[] = [];
    /** How many of each needed entry's events come after the position. */
    const afters: number[] = [];
    for (let i = 0, count = 0; i < entries.length && count < limit; i++) {
      const after = countAfter(entries[i] as Entry, afterPos);
      if (after === 0) continue;
      needed.push(entries[i] as Entry);
      afters.push(after);
      count += after;
    }
    const packs = await this.#packs(this.#commands, needed, true);
    if (packs.includes(null)) return undefined;
    const events: StoredEvent[] = [];
    for (const [index, entry] of needed.entries()) {
      const items = packs[index] as Item[] | undefined;
      // Only the events after the position, and only as many as the page still takes.
      const skip = items === undefined ? 0 : items.length - (afters[index] as number);
      forEachEvent(entry[0], entry[1], items, (event) => events.push(event), skip, limit - events.length);
    }
    return events;
  }

  /**
   * The items of the packed entries among `entries` (in one MGET), by index: undefined for an
   * event's own entry, null for a pack that is gone (its entry left history more than
   * `PACK_GRACE_MS` before, or Redis evicted it). With `replay`, the last pack fetched is kept for
   * the next call, which is often the next page of a replay that stopped inside it: a pack never
   * changes, and a batch of thousands is then fetched and parsed once, not once per page.
   */
  async #packs(client: Redis, entries: readonly Entry[], replay = false): Promise<(Item[] | null | undefined)[]> {
    const keys = entries.map(([, fields]) => packOf(fields));
    const kept = this.#keptPack;
    const wanted = keys.filter((key) => key !== undefined && !(replay && key === kept?.key)) as string[];
    const found = wanted.length === 0 ? [] : await client.mget(wanted.map((key) => `${this.#keys[6]}${key}`));
    const parsed = new Map<string, Item[] | null>();
    for (const [i, key] of wanted.entries()) {
      const json = found[i];
      parsed.set(key, json === null || json === undefined ? null : (JSON.parse(json) as Item[]));
    }
    const last = wanted.at(-1);
    const lastItems = last === undefined ? undefined : parsed.get(last);
    if (replay && last !== undefined && lastItems) this.#keptPack = { key: last, items: lastItems };
    return keys.map((key) => {
      if (key === undefined) return undefined;
      if (replay && key === kept?.key) return kept.items;
      return parsed.get(key) ?? null;
    });
  }

  status(): BrokerStatus {
    if (this.#down === undefined && this.#commands.status === "ready" && this.#reader.status === "ready") {
      return { ok: true };
    }
    const reason = this.#down?.reason ?? "connecting";
    return {
      ok: false,
      detail: `Herald cannot use ${this.#target} (${reason}): publishes answer 503 and live events wait until it is back; reconnecting`,
    };
  }

  async close(): Promise<void> {
    // Before QUIT: singles published in the turn that closes are sent, as they were called.
    this.#sendUnnamed();
    this.#closed = true;
    clearInterval(this.#ping);
    this.#listeners.clear();
    this.#gapListeners.clear();
    this.#reader.disconnect();
    await this.#reading;
    await this.#commands.quit().catch(() => this.#commands.disconnect());
  }

  /** The stream id of an event id: a publisher's id through the id map, or a stream id that is still there. */
  async #locate(id: string): Promise<string | undefined> {
    const [stream, ids] = this.#keys;
    const mapped = await this.#commands.hget(ids, id);
    // A drawn key maps to a range ("<first> <last>"), never an event: `id` is then a stream id or nothing.
    // A client's stream id is compared by its numbers: written without leading zeros, as Redis does.
    const sid = mapped !== null && STREAM_ID.test(mapped) ? mapped : STREAM_ID.test(id) ? posSid(id) : undefined;
    if (sid === undefined) return undefined;
    try {
      // The entry at or before `sid`: the event itself, or a packed entry that may hold it.
      const [entry] = (await this.#commands.xrevrange(stream, sid, "-", "COUNT", 1)) as Entry[];
      return entry && sidPos(sid) <= sidPos(lastSid(entry)) ? sid : undefined;
    } catch (err) {
      // A client's id of the right shape but out of range (digits beyond 64 bits): not in history.
      if ((err as Error).message.includes("Invalid stream ID")) return undefined;
      throw err;
    }
  }

  /** Reads where the stream ends now (its last id and sequence number) into the reader's position. */
  async #streamEnd(client: Redis): Promise<void> {
    const [stream, , , seq] = this.#keys;
    const replies = await client.multi().xrevrange(stream, "+", "-", "COUNT", 1).get(seq).exec();
    const [[lastErr, last], [seqErr, count]] = replies as [[Error | null, Entry[]], [Error | null, string | null]];
    if (lastErr || seqErr) throw lastErr ?? seqErr;
    const entry = last[0];
    this.#lastId = entry?.[0] ?? "0-0";
    this.#lastSeq = entry ? numbersOf(entry[1])?.last : count === null ? 0 : Number(count);
  }

  /**
   * After the reader reconnects: is its position still a place in this stream? The event it read
   * last may be gone from the middle of what Redis keeps (written to a primary that failed before
   * its replica had it), or Redis may have lost data (its counter went back). Events trimmed from
   * the old end are not a gap by themselves: the sequence numbers tell on the next read.
   */
  async #positionLost(): Promise<boolean> {
    const [stream, , , seq] = this.#keys;
    const last = this.#lastId as string;
    const replies = await this.#reader
      .multi()
      .xrange(stream, last, last)
      .xrange(stream, "-", "+", "COUNT", 1)
      .get(seq)
      .exec();
    const [[e1, found], [e2, first], [e3, count]] = replies as [
      [Error | null, Entry[]],
      [Error | null, Entry[]],
      [Error | null, string | null],
    ];
    if (e1 || e2 || e3) throw e1 ?? e2 ?? e3;
    if (this.#lastSeq !== undefined && Number(count ?? 0) < this.#lastSeq) return true;
    const oldest = first[0]?.[0];
    return last !== "0-0" && found.length === 0 && oldest !== undefined && sidPos(oldest) < sidPos(last);
  }

  /**
   * After a failover lost the reader's position: which of the entries it delivered last are gone
   * (`#failedOver`). Replication copies the stream in order, so what survived is a prefix of them: those
   * whose stream ids the new primary holds. Their clients will resume with the id of an event that
   * is gone, or that a publisher's retry stored again later, after events they never got.
   */
  async #markLost(): Promise<void> {
    const size = this.#recentSize;
    if (size === 0) return;
    const { sids, counts, ids } = this.#recent;
    const at = (k: number) => (this.#recentNext - size + k + PAGE) % PAGE;
    /** The position of the last event of the entry in slot `slot`. */
    const lastPos = (slot: number) => sidPos(sidAfter(sids[slot] as string, (counts[slot] as number) - 1));
    const [stream] = this.#keys;
    // The newest entry the new primary holds up to the newest delivered: the last that survived,
    // when it is one of them (one entry fetched, whatever the events' size).
    const [newestHeld] = (await this.#reader.xrevrange(
      stream,
      sids[at(size - 1)] as string,
      "-",
      "COUNT",
      1,
    )) as Entry[];
    let kept = size;
    while (kept > 0 && sids[at(kept - 1)] !== newestHeld?.[0]) kept--;
    if (kept === size) return;
    // The newest that survived; none at all means that Redis lost more than the node remembers.
    const survivor = kept > 0 ? at(kept - 1) : undefined;
    const lostIds = new Set<string>();
    for (let k = kept; k < size; k++) if (ids[at(k)]) lostIds.add(ids[at(k)] as string);
    this.#failedOver = {
      from: sidPos(sids[at(kept)] as string),
      to: lastPos(at(size - 1)),
      ids: lostIds,
      resume: survivor === undefined ? undefined : { sid: sids[survivor] as string, pos: lastPos(survivor) },
    };
    this.#recentSize = 0;
    this.#log.warn(
      { lost: size - kept },
      "the failover lost events this node had delivered: their clients resume after the newest event that survived",
    );
  }

  /** The live feed missed events: listeners end the streams that relied on it. */
  #gap(reason: string): void {
    this.#log.warn(
      `the live feed from Redis has a gap (${reason}): ending this node's streams, their clients resume from history`,
    );
    for (const listener of this.#gapListeners) listener();
  }

  #lost(reason: string, err?: Error): void {
    if (this.#closed || this.#down !== undefined) return;
    this.#down = { reason, since: Date.now() };
    this.#log.warn(
      { err },
      `lost ${this.#target} (${reason}): publishes answer 503 and live events wait until it is back; reconnecting`,
    );
  }

  #ready(): void {
    if (this.#closed || this.#down === undefined) return;
    if (this.#commands.status !== "ready" || this.#reader.status !== "ready") return;
    const seconds = ((Date.now() - this.#down.since) / 1000).toFixed(1);
    this.#down = undefined;
    this.#log.info(`${this.#target} is reachable again after ${seconds} s`);
  }

  /**
   * Each PING_MS: sends a PING on the publishing connection, or, when the last one is still
   * unanswered and nothing else came back for `#silenceMs` either, reopens the connection.
   */
  #checkCommands(): void {
    const now = Date.now();
    for (const [client, since] of this.#handshakes) {
      // Connected, but the handshake (INFO) is not answered: the new link is silent too.
      if (client.status === "connect" && now - since > COMMAND_TIMEOUT_MS) {
        this.#handshakes.delete(client);
        this.#hung(client, COMMAND_TIMEOUT_MS);
      }
    }
    if (this.#commands.status !== "ready") {
      this.#pingSentAt = undefined;
      return;
    }
    if (this.#pingSentAt === undefined) {
      this.#pingSentAt = now;
      this.#commands.ping().then(
        () => {
          this.#answeredAt = Date.now();
          this.#pingSentAt = undefined;
        },
        () => {
          this.#pingSentAt = undefined;
        },
      );
    } else if (now - Math.max(this.#pingSentAt, this.#answeredAt) > this.#silenceMs) {
      this.#pingSentAt = undefined;
      this.#hung(this.#commands, this.#silenceMs);
    }
  }

  /** The reader's `promise`, whose connection is reopened if it takes longer than `ms`. */
  async #bounded<T>(promise: Promise<T>, ms: number): Promise<T> {
    const timer = setTimeout(() => this.#hung(this.#reader, ms), ms);
    try {
      return await promise;
    } finally {
      clearTimeout(timer);
    }
  }

  /** A connection went silent: report it, and close it so that ioredis opens a new one. */
  #hung(client: Redis, ms: number): void {
    if (this.#closed) return;
    this.#lost(`no answer within ${ms} ms`);
    client.disconnect(true);
  }

  /** Tails the stream from `#lastId` for as long as the broker is open, through Redis outages. */
  async #readLoop(): Promise<void> {
    let failures = 0;
    while (!this.#closed) {
      try {
        if (this.#lastId === undefined) {
          await this.#bounded(this.#streamEnd(this.#reader), COMMAND_TIMEOUT_MS);
          this.#positionUnchecked = false;
        } else if (this.#positionUnchecked) {
          if (await this.#bounded(this.#positionLost(), COMMAND_TIMEOUT_MS)) {
            await this.#bounded(this.#markLost(), COMMAND_TIMEOUT_MS);
            this.#gap("the last event it read is no longer in Redis, which failed over or lost data");
            await this.#bounded(this.#streamEnd(this.#reader), COMMAND_TIMEOUT_MS);
          }
          this.#positionUnchecked = false;
        }
        const reply = (await this.#bounded(
          this.#reader.xread("COUNT", PAGE, "BLOCK", BLOCK_MS, "STREAMS", this.#keys[0], this.#lastId as string),
          BLOCK_MS + COMMAND_TIMEOUT_MS,
        )) as [string, Entry[]][] | null;
        failures = 0;
        for (const [, all] of reply ?? []) {
          const numbers = all.map(([, fields]) => numbersOf(fields));
          // A page of events at a time: a reader that lagged may find thousands of large batches.
          for (let from = 0, to = 0; from < all.length; from = to) {
            for (let events = 0; to < all.length && events < PAGE; to++) events += countIn(numbers[to]);
            const entries = all.slice(from, to);
            const packs = await this.#bounded(this.#packs(this.#reader, entries), COMMAND_TIMEOUT_MS);
            this.#deliver(entries, numbers.slice(from, to), packs);
          }
        }
      } catch {
        if (this.#closed) return;
        // The connection's own events report the outage; reconnecting is ioredis's job.
        failures++;
        await new Promise((resolve) => setTimeout(resolve, Math.min(1_000, 50 * failures)));
      }
    }
  }

  /** Hands the events of `entries` (read in order after `#lastId`) to the listeners. */
  #deliver(
    entries: readonly Entry[],
    numbered: readonly ReturnType<typeof numbersOf>[],
    packs: readonly (Item[] | null | undefined)[],
  ): void {
    for (const [index, [sid, fields]] of entries.entries()) {
      const numbers = numbered[index];
      if (numbers !== undefined && this.#lastSeq !== undefined && numbers.first !== this.#lastSeq + 1) {
        this.#gap(`expected event number ${this.#lastSeq + 1}, read ${numbers.first}: it lagged behind trimming`);
      }
      this.#lastId = sid;
      this.#lastSeq = numbers?.last;
      const pack = packs[index];
      let id = "";
      if (pack === null) {
        this.#gap(`a batch's events were gone when this node read its entry (${PACK_MISSING})`);
      } else {
        forEachEvent(sid, fields, pack, (event) => {
          if (pack === undefined && event.id !== sid) id = event.id;
          this.#listeners.emit(event);
        });
      }
      const slot = this.#recentNext;
      this.#recent.sids[slot] = sid;
      this.#recent.counts[slot] = countIn(numbers);
      this.#recent.ids[slot] = id;
      this.#recentNext = (slot + 1) % PAGE;
      this.#recentSize = Math.min(this.#recentSize + 1, PAGE);
    }
  }
}

/** A Redis URL without its password, for logs and `/health`. */
function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.hostname}:${parsed.port || "6379"}`;
  } catch {
    return "the configured URL";
  }
}
