import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { SqliteBroker } from "../../src/broker/sqlite-broker.js";
import { type HeraldProcess, runHerald } from "../helpers/process.js";

const running: HeraldProcess[] = [];
afterEach(() => {
  for (const p of running.splice(0)) p.child.kill("SIGKILL");
});

const freshDir = () => mkdtempSync(join(tmpdir(), "herald-start-"));

/** Another process holds the database's lock, the way a predecessor does while it shuts down. */
async function holdLock(path: string, releaseAfterMs: number): Promise<{ released: Promise<void> }> {
  const script = `
    const Database = require(${JSON.stringify(resolve("node_modules/better-sqlite3"))});
    const db = new Database(${JSON.stringify(path)});
    db.pragma("journal_mode = WAL");
    db.pragma("locking_mode = EXCLUSIVE");
    // In exclusive mode a write takes the lock, and keeps it until the connection closes.
    db.exec("CREATE TABLE IF NOT EXISTS holder (x)");
    console.log("locked");
    setTimeout(() => { db.close(); console.log("released"); }, ${releaseAfterMs});
  `;
  const child = spawn(process.execPath, ["-e", script]);
  let out = "";
  await new Promise<void>((locked, failed) => {
    child.stdout.on("data", (chunk) => {
      out += chunk;
      if (out.includes("locked")) locked();
    });
    child.once("exit", () => failed(new Error(`the lock holder exited early: ${out}`)));
  });
  // Wrapped: an async function that returned the promise itself would wait for it.
  return { released: new Promise((released) => child.once("exit", () => released())) };
}

describe("BROKER=sqlite at start-up", () => {
  it("waits for a predecessor that lets go of the database within the shutdown grace", async () => {
    const path = join(freshDir(), "herald.db");
    const { released } = await holdLock(path, 2_500);
    const started = Date.now();
    // Synchronous, like Herald's start-up: it blocks until the lock is free or the wait is over.
    const broker = SqliteBroker.open({ path, historySize: 10 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
    await broker.publish({ topic: "t", data: "after the predecessor" });
    await broker.close();
    await released;
  });

  const failures: [string, () => string][] = [
    [
      "a path under a regular file",
      () => {
        const file = join(freshDir(), "plain.txt");
        writeFileSync(file, "not a folder\n");
        return join(file, "herald.db");
      },
    ],
    [
      "a file that is not a database",
      () => {
        const file = join(freshDir(), "notes.db");
        writeFileSync(file, "these are notes, not a database\n".repeat(100));
        return file;
      },
    ],
    ["a path under /proc", () => `/proc/herald-${process.pid}/data/herald.db`],
  ];

  it.each(failures)("stops at once with a message naming DATABASE_PATH for %s", async (_what, makePath) => {
    const path = makePath();
    const herald = runHerald({ BROKER: "sqlite", DATABASE_PATH: path });
    running.push(herald);
    const { code } = await herald.exit;
    expect(code).toBe(1);
    expect(herald.stderr()).toContain(`DATABASE_PATH ${path} cannot be used`);
  });
});
