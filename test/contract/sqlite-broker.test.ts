import fs, { mkdtempSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { StoredEvent } from "../../src/broker/broker.js";
import { SqliteBroker } from "../../src/broker/sqlite-broker.js";
import { waitFor } from "../helpers/wait.js";
import { describeBrokerContract } from "./broker-contract.js";

const freshPath = () => join(mkdtempSync(join(tmpdir(), "herald-sqlite-")), "herald.db");

describeBrokerContract("SqliteBroker", async (options) => SqliteBroker.open({ ...options, path: freshPath() }));

it("SqliteBroker never hands out an id twice across a restart, even after age trimming emptied history", async () => {
  const path = freshPath();
  const first = SqliteBroker.open({ path, historySize: 100, historyTtlS: 1 });
  const old: StoredEvent[] = [];
  for (let i = 0; i < 3; i++) old.push((await first.publish({ topic: "a", data: `${i}` })).event);
  await waitFor("history to empty", async () => !(await first.locate(old[2]?.id ?? "")).found, 5_000);
  await first.close();
  const second = SqliteBroker.open({ path, historySize: 100, historyTtlS: 1 });
  const next = (await second.publish({ topic: "a", data: "after" })).event;
  expect(old.map((e) => e.id)).not.toContain(next.id);
  expect(next.pos > (old[2]?.pos ?? "")).toBe(true);
  await second.close();
});

it("SqliteBroker trims by age from the oldest end only, when the clock steps back", async () => {
  let clock = 1_800_000_000_000;
  const broker = SqliteBroker.open({ path: freshPath(), historySize: 100, historyTtlS: 60, now: () => clock });
  const a = (await broker.publish({ topic: "t", data: "a" })).event;
  clock -= 3_600_000;
  // Stamped an hour before `a`, though published after it.
  const b = (await broker.publish({ topic: "t", data: "b" })).event;
  clock += 3_600_000 + 30_000;
  const c = (await broker.publish({ topic: "t", data: "c" })).event;
  const location = await broker.locate(a.id);
  expect(location.found).toBe(true);
  expect((await broker.read(location.pos as string, 10)).map((e) => e.data)).toEqual(["b", "c"]);
  // Once `a` is past the age limit too, everything up to the first young event goes.
  clock += 31_000;
  expect((await broker.locate(a.id)).found).toBe(false);
  expect((await broker.locate(b.id)).found).toBe(false);
  expect((await broker.locate(c.id)).found).toBe(true);
  await broker.close();
});

it("SqliteBroker remembers the ids that left history across a restart, and refuses them", async () => {
  const path = freshPath();
  const first = SqliteBroker.open({ path, historySize: 2 });
  await first.publish({ topic: "t", data: "x", id: "order-1" });
  for (let i = 0; i < 2; i++) await first.publish({ topic: "t", data: `${i}` });
  await first.close();
  const second = SqliteBroker.open({ path, historySize: 2 });
  await expect(second.publish({ topic: "t", data: "x", id: "order-1" })).rejects.toMatchObject({
    code: "HERALD_ID_RETIRED",
  });
  expect((await second.locate("order-1")).found).toBe(false);
  await second.close();
});

describe("SqliteBroker and a publisher id of the form it draws", () => {
  /** Publishes `own-<n>` (the id this database would draw n events later), then events until it draws that one. */
  async function drawPast(reopen: (path: string) => void | Promise<void>) {
    const path = freshPath();
    const first = SqliteBroker.open({ path, historySize: 100 });
    const one = (await first.publish({ topic: "t", data: "1" })).event.id;
    const taken = one.replace(/\d+$/, "4");
    await first.publish({ topic: "t", data: "mine", id: taken });
    await first.close();
    await reopen(path);
    const second = SqliteBroker.open({ path, historySize: 100 });
    const third = (await second.publish({ topic: "t", data: "3" })).event;
    const fourth = (await second.publish({ topic: "t", data: "4" })).event;
    const found = await second.locate(taken);
    await second.close();
    return { taken, third, fourth, found };
  }

  it("never draws it, across a restart", async () => {
    const { taken, third, fourth, found } = await drawPast(() => undefined);
    expect(third.id).toBe(taken.replace(/\d+$/, "3"));
    expect(fourth.id).not.toBe(taken);
    expect(fourth.id.startsWith(`${taken}-`)).toBe(true);
    expect(found.found).toBe(true);
  });

  it("never draws it, in a file written before such ids were noted", async () => {
    const { taken, fourth } = await drawPast((path) => {
      const db = new Database(path);
      db.prepare("DELETE FROM meta WHERE key NOT IN ('run', 'seq')").run();
      db.close();
    });
    expect(fourth.id).not.toBe(taken);
    expect(fourth.id.startsWith(`${taken}-`)).toBe(true);
  });
});

describe("SqliteBroker and the ids it drew that left history", () => {
  const filler = (n: number, from = 0) => Array.from({ length: n }, (_, i) => ({ topic: "t", data: `${from + i}` }));

  it("refuses them to a publisher across a restart, for RETIRED_IDS_MIN more events, then forgets the oldest", async () => {
    const path = freshPath();
    const first = SqliteBroker.open({ path, historySize: 1 });
    const drawn = (await first.publish({ topic: "t", data: "first" })).event.id;
    // It and 9,999 more ids leave history: 10,000 retired, all remembered.
    await first.publishBatch(filler(10_000));
    await expect(first.publish({ topic: "t", data: "x", id: drawn })).rejects.toMatchObject({
      code: "HERALD_ID_RETIRED",
    });
    await first.close();
    const second = SqliteBroker.open({ path, historySize: 1 });
    await expect(second.publish({ topic: "t", data: "x", id: drawn })).rejects.toMatchObject({
      code: "HERALD_ID_RETIRED",
    });
    // One more leaves: 10,001 retired, and the oldest is forgotten.
    await second.publish({ topic: "t", data: "one more" });
    const again = await second.publish({ topic: "t", data: "x", id: drawn });
    expect(again).toMatchObject({ duplicate: false, event: { id: drawn, data: "x" } });
    await second.close();
  }, 60_000);

  it("are no longer copied into the retired table, which keeps the other ids only", async () => {
    const path = freshPath();
    const broker = SqliteBroker.open({ path, historySize: 1 });
    await broker.publish({ topic: "t", data: "x", id: "order-1" });
    await broker.publishBatch(filler(3));
    await broker.close();
    const db = new Database(path);
    expect(db.prepare("SELECT id FROM retired").pluck().all()).toEqual(["order-1"]);
    db.close();
  });
});

describe("SqliteBroker's events table", () => {
  it("keeps no id for the events whose id it drew, only for publishers' ids", async () => {
    const path = freshPath();
    const broker = SqliteBroker.open({ path, historySize: 100 });
    const drawn = (
      await broker.publishBatch([
        { topic: "t", data: "1" },
        { topic: "t", data: "2" },
      ])
    ).map((r) => r.event);
    await broker.publish({ topic: "t", data: "3", id: "order-3" });
    expect((await broker.locate(drawn[1]?.id ?? "")).found).toBe(true);
    expect(await broker.publish({ topic: "t", data: "2", id: drawn[1]?.id })).toMatchObject({ duplicate: true });
    await broker.close();
    const db = new Database(path, { readonly: true });
    expect(db.prepare("SELECT id FROM events ORDER BY seq").pluck().all()).toEqual([null, null, "order-3"]);
    db.close();
  });

  it("upgrades a file that kept every id (NOT NULL UNIQUE): same ids, same replay, same refusals", async () => {
    const path = freshPath();
    const old = new Database(path);
    old.exec(`
      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, topic TEXT NOT NULL, event TEXT,
        data TEXT NOT NULL, retry INTEGER, private INTEGER, time INTEGER NOT NULL, alternates TEXT);
      CREATE TABLE retired (id TEXT PRIMARY KEY, seq INTEGER NOT NULL);
      INSERT INTO meta VALUES ('run', 'old'), ('seq', '4'), ('reserved-scanned', '1');
      INSERT INTO events VALUES (2, 'old-2', 't', NULL, 'two', NULL, NULL, 1, NULL);
      INSERT INTO events VALUES (3, 'order-3', 't', 'e', 'three', 5, 1, 2, '["u"]');
      INSERT INTO events VALUES (4, 'old-4', 't', NULL, 'four', NULL, NULL, 3, NULL);
      INSERT INTO retired VALUES ('order-1', 1);
    `);
    old.close();
    const broker = SqliteBroker.open({ path, historySize: 100 });
    const from = await broker.locate("old-2");
    expect(from.found).toBe(true);
    const replay = await broker.read(from.pos as string, 10);
    expect(replay.map((e) => [e.id, e.data])).toEqual([
      ["order-3", "three"],
      ["old-4", "four"],
    ]);
    expect(replay[0]).toMatchObject({ event: "e", retry: 5, private: true, alternates: ["u"] });
    await expect(broker.publish({ topic: "t", data: "x", id: "order-1" })).rejects.toMatchObject({
      code: "HERALD_ID_RETIRED",
    });
    await expect(broker.publish({ topic: "t", data: "other", id: "old-4" })).rejects.toMatchObject({
      code: "HERALD_ID_CONFLICT",
    });
    expect((await broker.publish({ topic: "t", data: "five" })).event.id).toBe("old-5");
    await broker.close();
    const db = new Database(path, { readonly: true });
    expect(db.prepare("SELECT id FROM events ORDER BY seq").pluck().all()).toEqual([null, "order-3", null, null]);
    expect(db.prepare("SELECT \"notnull\" FROM pragma_table_info('events') WHERE name = 'id'").pluck().get()).toBe(0);
    db.close();
    // Opening it again changes nothing.
    const again = SqliteBroker.open({ path, historySize: 100 });
    expect((await again.locate("order-3")).found).toBe(true);
    await again.close();
  });
});

describe("SqliteBroker and the disk", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  /** Holds every sync of the write-ahead log until the test lets it go. */
  function holdSyncs() {
    const real = fs.fsync;
    const held: { fd: number; release: () => void }[] = [];
    vi.spyOn(fs, "fsync").mockImplementation(((fd: number, done: (err: Error | null) => void) => {
      held.push({ fd, release: () => real(fd, done) });
    }) as typeof fs.fsync);
    return held;
  }

  it("answers a publish, and shows its event to subscribers and replays, only once the log is synced", async () => {
    const held = holdSyncs();
    const broker = SqliteBroker.open({ path: freshPath(), historySize: 100 });
    const live: string[] = [];
    await broker.subscribe((e) => live.push(e.data));
    let answered = false;
    const publishing = broker.publish({ topic: "t", data: "one" }).then((r) => {
      answered = true;
      return r.event;
    });
    await waitFor("the sync to start", () => held.length === 1);
    // Committed, not yet on disk: nobody may see it.
    expect(answered).toBe(false);
    expect(live).toEqual([]);
    expect(await broker.read("", 10)).toEqual([]);
    expect((await broker.locate("earliest")).head).toBeUndefined();
    held[0]?.release();
    const event = await publishing;
    expect(live).toEqual(["one"]);
    expect((await broker.read("", 10)).map((e) => e.id)).toEqual([event.id]);
    expect((await broker.locate(event.id)).found).toBe(true);
    await broker.close();
  });

  it("commits and syncs once for the publishes that arrive while a sync is under way, and answers them in order", async () => {
    const held = holdSyncs();
    const broker = SqliteBroker.open({ path: freshPath(), historySize: 100 });
    const order: string[] = [];
    const live: string[] = [];
    await broker.subscribe((e) => live.push(e.data));
    const first = broker.publishBatch([{ topic: "t", data: "1" }]).then(() => order.push("1"));
    await waitFor("the first sync", () => held.length === 1);
    const second = broker.publishBatch([{ topic: "t", data: "2" }]).then(() => order.push("2"));
    await new Promise((resolve) => setImmediate(resolve));
    const third = broker.publishBatch([{ topic: "t", data: "3" }]).then(() => order.push("3"));
    await new Promise((resolve) => setImmediate(resolve));
    // Two more publishes, and no second sync while the first is under way.
    expect(held.length).toBe(1);
    held[0]?.release();
    await first;
    await waitFor("the second sync", () => held.length === 2);
    expect(order).toEqual(["1"]);
    held[1]?.release();
    await Promise.all([second, third]);
    expect(order).toEqual(["1", "2", "3"]);
    expect(live).toEqual(["1", "2", "3"]);
    expect(held.length).toBe(2);
    await broker.close();
  });

  it("answers an unknown outcome with the ids to retry once the log cannot be synced, then 503 and /health", async () => {
    const failing = vi.spyOn(fs, "fsync").mockImplementation(((_fd: number, done: (err: Error | null) => void) => {
      done(Object.assign(new Error("EIO: i/o error, fsync"), { code: "EIO" }));
    }) as typeof fs.fsync);
    const path = freshPath();
    const broker = SqliteBroker.open({ path, historySize: 100 });
    const live: string[] = [];
    await broker.subscribe((e) => live.push(e.data));
    const single = await broker.publish({ topic: "t", data: "one" }).catch((err: unknown) => err);
    expect(single).toMatchObject({ code: "HERALD_PUBLISH_OUTCOME_UNKNOWN", publishId: expect.any(String) });
    expect(broker.status()).toMatchObject({ ok: false, detail: expect.stringContaining("synced to disk") });
    await expect(broker.publishBatch([{ topic: "t", data: "later" }])).rejects.toMatchObject({
      code: "HERALD_BROKER_UNAVAILABLE",
      message: expect.stringContaining("synced to disk"),
    });
    expect(live).toEqual([]);
    await broker.close();
    // After a restart, the retry with the id the answer named is stored once: here it was on disk after all.
    failing.mockRestore();
    const again = SqliteBroker.open({ path, historySize: 100 });
    const id = (single as { publishId: string }).publishId;
    expect(await again.publish({ topic: "t", data: "one", id })).toMatchObject({ duplicate: true, event: { id } });
    expect((await again.read("", 10)).map((e) => e.data)).toEqual(["one"]);
    await again.close();
  });

  it("names every item's id for a batch whose sync failed", async () => {
    vi.spyOn(fs, "fsync").mockImplementation(((_fd: number, done: (err: Error | null) => void) => {
      done(Object.assign(new Error("EIO: i/o error, fsync"), { code: "EIO" }));
    }) as typeof fs.fsync);
    const broker = SqliteBroker.open({ path: freshPath(), historySize: 100 });
    const failed = await broker
      .publishBatch([
        { topic: "t", data: "a", id: "mine" },
        { topic: "t", data: "b" },
      ])
      .catch((err: unknown) => err);
    expect(failed).toMatchObject({
      code: "HERALD_PUBLISH_OUTCOME_UNKNOWN",
      publishIds: ["mine", expect.stringMatching(/-2$/)],
      message: expect.stringContaining("Retry the batch with the same ids"),
    });
    await broker.close();
  });

  it("syncs the file that stays the write-ahead log through checkpoints", async () => {
    const synced = new Set<number>();
    const real = fs.fsync;
    vi.spyOn(fs, "fsync").mockImplementation(((fd: number, done: (err: Error | null) => void) => {
      synced.add(fd);
      real(fd, done);
    }) as typeof fs.fsync);
    const path = freshPath();
    const broker = SqliteBroker.open({ path, historySize: 1_000 });
    // About 8 MB of log: SQLite checkpoints every 1,000 pages (4 MB) and then writes the log from its start.
    const data = "x".repeat(1_000);
    for (let i = 0; i < 16; i++) {
      await broker.publishBatch(Array.from({ length: 500 }, () => ({ topic: "t", data })));
    }
    expect(synced.size).toBe(1);
    const [fd] = synced;
    expect(fs.fstatSync(fd as number).ino).toBe(statSync(`${path}-wal`).ino);
    await broker.close();
  });
});
