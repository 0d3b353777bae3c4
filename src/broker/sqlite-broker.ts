import { randomBytes } from "node:crypto";
import fs, { existsSync, mkdirSync, statSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { SHUTDOWN_GRACE_MS } from "../config.js";
import { BrokerUnavailableError, IdConflictError, IdRetiredError } from "../errors.js";
import {
  assignedSeq,
  atItem,
  BEFORE_FIRST_POS,
  type Broker,
  type BrokerStatus,
  EARLIEST_ID,
  type EventInput,
  type Location,
  type PublishResult,
  posSeq,
  retiredIdCapacity,
  type StoredEvent,
  sameContent,
  seqPos,
  storedEvent,
  unknownOutcome,
} from "./broker.js";
import { Listeners } from "./listeners.js";

/** Options for `SqliteBroker`. */
export interface SqliteBrokerOptions {
  /** The database file; its folder is created if missing. */
  path: string;
  historySize: number;
  /** Events older than this many seconds leave history; 0 or absent keeps them. */
  historyTtlS?: number;
  /** The clock that stamps events and ages them (ms since epoch); `Date.now` unless a test steps it. */
  now?: () => number;
}

/** How long opening waits for the file lock: a predecessor may take the whole shutdown grace to let go. */
const LOCK_WAIT_MS = SHUTDOWN_GRACE_MS + 1_000;

/**
 * Creates the folder `dir` and its missing parents, one level at a time: Node's recursive
 * `mkdirSync` never returns for a path under `/proc`, where every level fails with ENOENT.
 */
function makeFolder(dir: string): void {
  const missing: string[] = [];
  let current = dir;
  while (!existsSync(current)) {
    missing.push(current);
    const parent = dirname(current);
    if (parent === current) break;
    current = parent;
  }
  if (existsSync(current) && !statSync(current).isDirectory()) throw new Error(`${current} is a file, not a folder`);
  for (const folder of missing.reverse()) mkdirSync(folder);
}

/** A start-up error that names the setting, the path and what is wrong, keeping the original as `cause`. */
function openError(path: string, err: unknown): Error {
  const code = (err as { code?: string }).code;
  const reason =
    code === "SQLITE_BUSY"
      ? "it is in use by another Herald process (still shutting down, or running); give each process its own file"
      : code === "SQLITE_NOTADB"
        ? "the file exists and is not a SQLite database; choose another path, or move the file away"
        : code === "SQLITE_CANTOPEN"
          ? "the file cannot be opened or created there; choose a path in a writable folder"
          : (err as Error).message;
  return new Error(`DATABASE_PATH ${path} cannot be used: ${reason}`, { cause: err });
}

interface EventRow {
  seq: number;
  /** Null for the id Herald drew: `<database>-<seq>`. */
  id: string | null;
  topic: string;
  event: string | null;
  data: string;
  retry: number | null;
  private: number | null;
  alternates: string | null;
  time: number;
}

/**
 * The meta rows that hold publisher ids of the form Herald draws (`<database>-<sequence>`) with a
 * sequence still ahead of the counter: the key is this prefix and the id.
 */
const RESERVED_KEY = "reserved ";

/** One publish call waiting for the next commit: a batch, or a single event as a batch of one. */
interface Pending {
  inputs: readonly EventInput[];
  /** Sent as a batch (`publishBatch`): an unknown outcome then names every item's id. */
  batch: boolean;
  resolve: (results: PublishResult[]) => void;
  reject: (err: unknown) => void;
}

/** A committed transaction waiting for the log to be synced to disk: its publishes and their outcomes. */
interface Committed {
  queue: Pending[];
  outcomes: (PublishResult[] | Error)[];
  /** The newest sequence it wrote. */
  seq: number;
}

/**
 * `id` is NULL when the event's id is the one Herald drew for its sequence (`<database>-<seq>`):
 * most events carry no id of their own, and an index entry per event, inserted and deleted again
 * when the event leaves history, was the largest cost of a publish after the row itself. The
 * partial index keeps the other ids unique and found.
 */
const EVENTS_TABLE = `
  CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    id TEXT,
    topic TEXT NOT NULL,
    event TEXT,
    data TEXT NOT NULL,
    retry INTEGER,
    private INTEGER,
    time INTEGER NOT NULL,
    alternates TEXT
  );
`;

const EVENTS_ID_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS events_id ON events (id) WHERE id IS NOT NULL";

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
  ${EVENTS_TABLE}
  DROP INDEX IF EXISTS events_time;
  CREATE TABLE IF NOT EXISTS retired (id TEXT PRIMARY KEY, seq INTEGER NOT NULL);
  CREATE INDEX IF NOT EXISTS retired_seq ON retired (seq);
`;

/**
 * Files written before drawn ids were left out (`id TEXT NOT NULL UNIQUE`, an index entry for
 * every event) are rebuilt once into today's table, in one transaction.
 */
function upgradeEvents(db: Database.Database, prefix: string): void {
  const id = db
    .prepare<[], { notnull: number }>("SELECT \"notnull\" FROM pragma_table_info('events') WHERE name = 'id'")
    .get();
  if (id?.notnull !== 1) return;
  db.transaction(() => {
    db.exec("ALTER TABLE events RENAME TO events_before");
    db.exec(EVENTS_TABLE);
    db.prepare(
      `INSERT INTO events (seq, id, topic, event, data, retry, private, time, alternates)
       SELECT seq, NULLIF(id, ? || seq), topic, event, data, retry, private, time, alternates FROM events_before`,
    ).run(prefix);
    db.exec("DROP TABLE events_before");
  })();
}

/** A row's event id: its own, or the one Herald drew for its sequence. */
function idOf(row: EventRow, prefix: string): string {
  return row.id ?? `${prefix}${row.seq}`;
}

function toStored(row: EventRow, prefix: string): StoredEvent {
  // In the field order `#insert` builds events in: one object shape, stored or read back.
  return {
    topic: row.topic,
    alternates: row.alternates === null ? undefined : (JSON.parse(row.alternates) as string[]),
    data: row.data,
    event: row.event ?? undefined,
    id: idOf(row, prefix),
    retry: row.retry ?? undefined,
    private: row.private === 1 ? true : undefined,
    time: row.time,
    pos: seqPos(row.seq),
  };
}

/**
 * Durable history on one machine, in a SQLite file. A publish resolves only once its transaction
 * is committed and its write-ahead log synced to disk; publishes that arrive in the same turn of
 * the event loop share one transaction, and those that arrive while the log is being synced share
 * the next transaction and sync. Subscribers, `read` and `locate` see an event only once it is synced. Ids are `<database>-<sequence>` and
 * stay ordered across restarts; the ids that left history are remembered (a bounded number, in the
 * file) and refused to new events. History is trimmed from its oldest end only, by size and by
 * age. One process only: the file is locked while open.
 */
export class SqliteBroker implements Broker {
  readonly #db: Database.Database;
  readonly #historySize: number;
  readonly #ttlMs: number;
  readonly #retiredCapacity: number;
  readonly #now: () => number;
  readonly #run: string;
  /** What every id this broker assigns starts with: `<database>-`. */
  readonly #prefix: string;
  /**
   * Publisher ids that look like ids Herald will draw later (see `RESERVED_KEY`): a drawn id
   * looks storage up only when it is one of these, not for every event.
   */
  readonly #reserved = new Set<string>();
  readonly #listeners = new Listeners();
  readonly #statements;
  /** Inserts a publish: all its items, or none (one with publisher ids in a savepoint of the transaction under way). */
  readonly #insertBatch: (inputs: readonly EventInput[]) => PublishResult[];
  /** Writes queued publishes in one transaction, an outcome for each (see `#commit`); built once, not per commit. */
  readonly #writeQueue: (queue: readonly Pending[]) => (PublishResult[] | Error)[];
  /** `#trimRows` in a transaction of its own, for a trim outside a commit. */
  readonly #trimAlone: (seq: number) => void;
  #seq: number;
  #queue: Pending[] = [];
  #commitScheduled = false;
  /** The write-ahead log, which Herald syncs itself (see `#sync`); undefined for `:memory:`. */
  readonly #log: number | undefined;
  /** Whether a sync is under way. */
  #syncing = false;
  /** Who waits for every committed transaction to be synced (`close`). */
  readonly #synced: (() => void)[] = [];
  /** Events up to this sequence are on disk: the only ones `read` and `locate` show. */
  #syncedSeq: number;
  /** Why the log could not be synced: from then on every publish fails. */
  #syncError: Error | undefined;

  private constructor(db: Database.Database, options: SqliteBrokerOptions) {
    this.#db = db;
    this.#historySize = options.historySize;
    this.#ttlMs = (options.historyTtlS ?? 0) * 1000;
    this.#retiredCapacity = retiredIdCapacity(options.historySize);
    this.#now = options.now ?? Date.now;
    db.exec(SCHEMA);
    // Files created before private events (or alternate topics) existed lack the column.
    const columns = db.prepare<[], { name: string }>("SELECT name FROM pragma_table_info('events')").all();
    if (!columns.some((c) => c.name === "private")) db.exec("ALTER TABLE events ADD COLUMN private INTEGER");
    if (!columns.some((c) => c.name === "alternates")) db.exec("ALTER TABLE events ADD COLUMN alternates TEXT");
    const getMeta = db.prepare<[string], { value: string }>("SELECT value FROM meta WHERE key = ?");
    let run = getMeta.get("run")?.value;
    if (run === undefined) {
      run = randomBytes(4).readUInt32BE().toString(36);
      db.prepare("INSERT INTO meta (key, value) VALUES ('run', ?)").run(run);
    }
    this.#run = run;
    this.#prefix = `${run}-`;
    upgradeEvents(db, this.#prefix);
    db.exec(EVENTS_ID_INDEX);
    // The high-water mark outlives the events: once trimming has emptied history, ids must still never repeat.
    const maxSeq = (db.prepare("SELECT MAX(seq) AS seq FROM events").get() as { seq: number | null }).seq ?? 0;
    this.#seq = Math.max(maxSeq, Number(getMeta.get("seq")?.value ?? 0));
    this.#syncedSeq = this.#seq;
    this.#statements = {
      byId: db.prepare<[string], EventRow>("SELECT * FROM events WHERE id = ?"),
      drawnAt: db.prepare<[number], EventRow>("SELECT * FROM events WHERE seq = ? AND id IS NULL"),
      insert: db.prepare(
        "INSERT INTO events (seq, id, topic, event, data, retry, private, alternates, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      ),
      saveSeq: db.prepare(
        "INSERT INTO meta (key, value) VALUES ('seq', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      ),
      // Drawn ids are not copied: which of them left history follows from their sequence (`#isRetired`).
      retire: db.prepare<[number]>(
        "INSERT OR REPLACE INTO retired (id, seq) SELECT id, seq FROM events WHERE seq <= ? AND id IS NOT NULL",
      ),
      trim: db.prepare("DELETE FROM events WHERE seq <= ?"),
      forget: db.prepare("DELETE FROM retired WHERE seq <= ?"),
      oldest: db.prepare<[], number | null>("SELECT MIN(seq) FROM events").pluck(),
      isRetired: db.prepare<[string], { seq: number }>("SELECT seq FROM retired WHERE id = ?"),
      // In history order, not time order: a clock stepped back must not make an event in the middle
      // look old. NOT INDEXED: a scan from the oldest row stops at the first young one.
      firstYoung: db.prepare<[number], { seq: number }>(
        "SELECT seq FROM events NOT INDEXED WHERE time >= ? ORDER BY seq LIMIT 1",
      ),
      tail: db.prepare<[], { seq: number | null }>("SELECT MAX(seq) AS seq FROM events"),
      head: db.prepare<[number], EventRow>("SELECT * FROM events WHERE seq <= ? ORDER BY seq DESC LIMIT 1"),
      page: db.prepare<[number, number, number], EventRow>(
        "SELECT * FROM events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
      ),
      reserve: db.prepare("INSERT OR IGNORE INTO meta (key, value) VALUES (?, '')"),
    };
    this.#loadReserved(getMeta.get("reserved-scanned") === undefined);
    const insertAll = (inputs: readonly EventInput[]) => {
      const batchIds = new Set<string>();
      for (const input of inputs) if (input.id !== undefined) batchIds.add(input.id);
      return inputs.map((input, index) => this.#insert(input, index, batchIds));
    };
    const inSavepoint = db.transaction(insertAll);
    // Only an event with a publisher id can be refused: a publish without needs no savepoint to undo.
    this.#insertBatch = (inputs) =>
      inputs.some((input) => input.id !== undefined) ? inSavepoint(inputs) : insertAll(inputs);
    this.#writeQueue = db.transaction((queue: readonly Pending[]) => this.#writeAll(queue));
    this.#trimAlone = db.transaction((seq: number) => this.#trimRows(seq));
    // WAL mode has created the log by now, and SQLite keeps that file while the database is open.
    this.#log = options.path === ":memory:" ? undefined : fs.openSync(`${options.path}-wal`, "r");
  }

  /**
   * Opens (or creates) the database at `options.path`. Waits up to `LOCK_WAIT_MS` for another
   * process to let go of the file; throws an error naming `DATABASE_PATH` if it does not, or if
   * the path cannot hold a database.
   */
  static open(options: SqliteBrokerOptions): SqliteBroker {
    let db: Database.Database | undefined;
    try {
      if (options.path !== ":memory:") makeFolder(dirname(options.path));
      db = new Database(options.path, { timeout: LOCK_WAIT_MS });
      db.pragma("journal_mode = WAL");
      // A 201 promises that the event is on disk: `#sync` syncs the log after each commit, off the
      // event loop, and answers only then. NORMAL leaves those syncs to Herald (SQLite still
      // syncs at checkpoints), where FULL would block the event loop for each commit.
      db.pragma("synchronous = NORMAL");
      // Ids come from this process's counter: a second process on the same file must fail, not interleave.
      db.pragma("locking_mode = EXCLUSIVE");
      db.exec("BEGIN IMMEDIATE; COMMIT;");
      return new SqliteBroker(db, options);
    } catch (err) {
      db?.close();
      throw openError(options.path, err);
    }
  }

  async publish(input: EventInput): Promise<PublishResult> {
    return (await this.#enqueue([input], false))[0] as PublishResult;
  }

  publishBatch(inputs: readonly EventInput[]): Promise<PublishResult[]> {
    return this.#enqueue(inputs, true);
  }

  #enqueue(inputs: readonly EventInput[], batch: boolean): Promise<PublishResult[]> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ inputs, batch, resolve, reject });
      // During a sync, the publishes queue for the commit that follows it.
      if (this.#commitScheduled || this.#syncing) return;
      this.#commitScheduled = true;
      setImmediate(() => this.#commit());
    });
  }

  async subscribe(onEvent: (event: StoredEvent) => void): Promise<() => Promise<void>> {
    return this.#listeners.add(onEvent);
  }

  async locate(id: string): Promise<Location> {
    try {
      this.#trimByAge();
      const newest = this.#statements.head.get(this.#syncedSeq);
      const head = newest && { id: idOf(newest, this.#prefix), pos: seqPos(newest.seq) };
      if (id === EARLIEST_ID) return { found: true, pos: BEFORE_FIRST_POS, head };
      const row = this.#find(id);
      return row === undefined || row.seq > this.#syncedSeq
        ? { found: false, head }
        : { found: true, pos: seqPos(row.seq), head };
    } catch (err) {
      throw new BrokerUnavailableError(`SQLite: ${(err as Error).message}`, { cause: err });
    }
  }

  async read(afterPos: string, limit: number): Promise<StoredEvent[]> {
    try {
      this.#trimByAge();
      return this.#statements.page
        .all(posSeq(afterPos), this.#syncedSeq, limit)
        .map((row) => toStored(row, this.#prefix));
    } catch (err) {
      throw new BrokerUnavailableError(`SQLite: ${(err as Error).message}`, { cause: err });
    }
  }

  status(): BrokerStatus {
    if (this.#syncError) return { ok: false, detail: this.#syncError.message };
    return this.#db.open ? { ok: true } : { ok: false, detail: "the SQLite database is closed" };
  }

  async close(): Promise<void> {
    if (!this.#db.open) return;
    this.#commit();
    if (this.#syncing) await new Promise<void>((resolve) => this.#synced.push(resolve));
    this.#listeners.clear();
    this.#db.close();
    if (this.#log !== undefined) fs.closeSync(this.#log);
  }

  /**
   * Writes every queued publish in one transaction (each with publisher ids in a savepoint of its
   * own, so that a refused publish leaves the others alone), then leaves answering them to
   * `#sync`. Waits while a sync is under way: the publishes that arrive meanwhile make one
   * transaction and one sync.
   */
  #commit(): void {
    this.#commitScheduled = false;
    if (this.#syncing || this.#queue.length === 0) return;
    const queue = this.#queue;
    this.#queue = [];
    if (this.#syncError) {
      for (const { reject } of queue) reject(this.#syncError);
      return;
    }
    const seqBefore = this.#seq;
    let outcomes: (PublishResult[] | Error)[];
    try {
      outcomes = this.#writeQueue(queue);
    } catch (err) {
      this.#seq = seqBefore;
      const unavailable = new BrokerUnavailableError(`SQLite: ${(err as Error).message}`, { cause: err });
      for (const { reject } of queue) reject(unavailable);
      return;
    }
    this.#sync({ queue, outcomes, seq: this.#seq });
  }

  /** The body of `#commit`'s transaction: each publish inserted or refused, the sequence saved, history trimmed. */
  #writeAll(queue: readonly Pending[]): (PublishResult[] | Error)[] {
    const outcomes: (PublishResult[] | Error)[] = [];
    for (const { inputs } of queue) {
      const seqBeforeBatch = this.#seq;
      try {
        outcomes.push(this.#insertBatch(inputs));
      } catch (err) {
        if (!(err instanceof IdConflictError || err instanceof IdRetiredError)) throw err;
        this.#seq = seqBeforeBatch;
        outcomes.push(err);
      }
    }
    this.#statements.saveSeq.run(String(this.#seq));
    this.#trimThrough(this.#seq - this.#historySize);
    this.#trimByAge();
    return outcomes;
  }

  /**
   * Syncs the write-ahead log in Node's thread pool, while the event loop goes on taking
   * publishes; then answers `committed`, and commits what queued meanwhile. A failed sync fails
   * its publishes and every later one: whether they are on disk is not known.
   */
  #sync(committed: Committed): void {
    this.#syncing = true;
    const finish = (err: Error | null) => {
      if (err) {
        this.#syncError ??= new BrokerUnavailableError(
          `SQLite: the database could not be synced to disk (${err.message}); restart Herald once the disk is fixed`,
          { cause: err },
        );
      }
      this.#syncing = false;
      this.#answer(committed);
      this.#commit();
      if (!this.#syncing) for (const wake of this.#synced.splice(0)) wake();
    };
    if (this.#log === undefined || this.#syncError) finish(null);
    else fs.fsync(this.#log, finish);
  }

  /** Answers the publishes of a synced transaction, and fans its events out in id order. */
  #answer({ queue, outcomes, seq }: Committed): void {
    const failed = this.#syncError;
    if (!failed) this.#syncedSeq = seq;
    for (const [i, { batch, resolve, reject }] of queue.entries()) {
      const outcome = outcomes[i] as PublishResult[] | Error;
      if (outcome instanceof Error) {
        reject(outcome);
        continue;
      }
      if (failed) {
        // Committed, but whether it is on disk is not known: its ids make a retry (after a restart) safe.
        const ids = outcome.map((r) => r.event.id);
        reject(unknownOutcome("SQLite could not sync the database to disk", ids, batch, { cause: failed }));
        continue;
      }
      for (const { event, duplicate } of outcome) if (!duplicate) this.#listeners.emit(event);
      resolve(outcome);
    }
  }

  /**
   * Inserts one item of a batch, or answers the event stored under its id; throws when the id
   * cannot be used. An id Herald draws is none of `batchIds`, which later items may claim.
   */
  #insert(input: EventInput, index: number, batchIds: ReadonlySet<string>): PublishResult {
    if (input.id !== undefined) {
      const existing = this.#find(input.id);
      if (existing !== undefined) {
        const stored = toStored(existing, this.#prefix);
        if (!sameContent(stored, input)) throw atItem(new IdConflictError(JSON.stringify(input.id)), index);
        return { event: stored, duplicate: true };
      }
      if (this.#isRetired(input.id)) {
        throw atItem(new IdRetiredError(JSON.stringify(input.id)), index);
      }
    }
    const seq = ++this.#seq;
    const drawn = `${this.#prefix}${seq}`;
    let id = input.id ?? drawn;
    // A publisher may have chosen this very id earlier; a suffix keeps ids unique.
    while (
      input.id === undefined &&
      (batchIds.has(id) || ((id !== drawn || this.#reserved.has(id)) && this.#taken(id)))
    ) {
      id = `${this.#prefix}${seq}-${randomBytes(3).toString("hex")}`;
    }
    if (input.id !== undefined && (assignedSeq(this.#prefix, input.id) ?? 0) > seq) this.#reserve(input.id);
    const event = storedEvent(input, id, this.#now(), seqPos(seq));
    // Positional parameters: binding by name costs a property lookup per column and row.
    this.#statements.insert.run(
      seq,
      id === drawn ? null : id,
      input.topic,
      input.event ?? null,
      input.data,
      input.retry ?? null,
      input.private ? 1 : null,
      input.alternates === undefined ? null : JSON.stringify(input.alternates),
      event.time,
    );
    return { event, duplicate: false };
  }

  /**
   * Whether `id`, one Herald is about to draw, is in history or remembered as having left it. Its
   * number has not left history, so only the `retired` table can hold it (see `#isRetired`).
   */
  #taken(id: string): boolean {
    return this.#find(id) !== undefined || this.#statements.isRetired.get(id) !== undefined;
  }

  /** The row of the event whose id is `id`: drawn ids are found by their sequence, the others by the index. */
  #find(id: string): EventRow | undefined {
    const seq = assignedSeq(this.#prefix, id);
    return (seq === undefined ? undefined : this.#statements.drawnAt.get(seq)) ?? this.#statements.byId.get(id);
  }

  /**
   * Whether `id` is one of the last `#retiredCapacity` ids that left history. Sequences are
   * contiguous and history leaves from its oldest end, so those are the events numbered up to
   * `retiredCapacity` below the newest that left: a drawn id is retired by its number alone, and
   * the `retired` table holds only the others (publisher ids, suffixed ids).
   */
  #isRetired(id: string): boolean {
    if (this.#statements.isRetired.get(id) !== undefined) return true;
    const seq = assignedSeq(this.#prefix, id);
    if (seq === undefined) return false;
    const oldest = this.#statements.oldest.get();
    const leftThrough = oldest == null ? this.#seq : oldest - 1;
    return seq <= leftThrough && seq > leftThrough - this.#retiredCapacity;
  }

  /** Notes that Herald must not draw `id` plainly: kept in the file, committed with the event. */
  #reserve(id: string): void {
    this.#reserved.add(id);
    this.#statements.reserve.run(RESERVED_KEY + id);
  }

  /**
   * Reads the reserved ids, dropping those the counter has passed or that storage forgot. A file
   * from before reservations were kept (`scan`) is searched once for them.
   */
  #loadReserved(scan: boolean): void {
    const db = this.#db;
    const prefix = this.#prefix;
    // Just above every id that starts with the prefix (`.` follows `-`).
    const upper = `${this.#run}.`;
    db.transaction(() => {
      if (scan) {
        const ids = db
          .prepare<[string, string, string, string], string>(
            "SELECT id FROM events WHERE id > ? AND id < ? UNION SELECT id FROM retired WHERE id > ? AND id < ?",
          )
          .pluck()
          .all(prefix, upper, prefix, upper);
        for (const id of ids)
          if ((assignedSeq(this.#prefix, id) ?? 0) > this.#seq) this.#statements.reserve.run(RESERVED_KEY + id);
        db.prepare("INSERT INTO meta (key, value) VALUES ('reserved-scanned', '1')").run();
      }
      const keys = db
        .prepare<[string], string>("SELECT key FROM meta WHERE key LIKE ?")
        .pluck()
        .all(`${RESERVED_KEY}%`);
      const drop = db.prepare("DELETE FROM meta WHERE key = ?");
      for (const key of keys) {
        const id = key.slice(RESERVED_KEY.length);
        if ((assignedSeq(this.#prefix, id) ?? 0) > this.#seq && this.#taken(id)) this.#reserved.add(id);
        else drop.run(key);
      }
    })();
  }

  /** Drops the events older than the age limit from the oldest end, up to the first younger one. */
  #trimByAge(): void {
    if (this.#ttlMs === 0) return;
    const young = this.#statements.firstYoung.get(this.#now() - this.#ttlMs);
    const through = young === undefined ? this.#statements.tail.get()?.seq : young.seq - 1;
    if (through != null) this.#trimThrough(through);
  }

  /** Drops the events up to `seq` from history, remembering their ids (a bounded number of them). */
  #trimThrough(seq: number): void {
    // Inside a commit, its transaction is enough: a savepoint would cost two statements and undo nothing more.
    if (this.#db.inTransaction) this.#trimRows(seq);
    else this.#trimAlone(seq);
  }

  #trimRows(seq: number): void {
    this.#statements.retire.run(seq);
    if (this.#statements.trim.run(seq).changes === 0) return;
    this.#statements.forget.run(seq - this.#retiredCapacity);
  }
}
