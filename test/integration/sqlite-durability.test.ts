import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type HeraldProcess, runHerald } from "../helpers/process.js";
import { publishTo } from "../helpers/publish.js";
import { openStream } from "../helpers/stream.js";
import { waitFor } from "../helpers/wait.js";

const running: HeraldProcess[] = [];
afterEach(() => {
  for (const p of running.splice(0)) p.child.kill("SIGKILL");
});

/** Ids of the SQLite broker are `<database>-<sequence>`. */
const seqOf = (id: string) => Number(id.split("-")[1]);

describe("BROKER=sqlite", () => {
  it("keeps every acknowledged event through kill -9, and replays it in order, none twice", async () => {
    const env = { BROKER: "sqlite", DATABASE_PATH: join(mkdtempSync(join(tmpdir(), "herald-db-")), "herald.db") };
    const first = runHerald(env);
    running.push(first);
    const url = await first.url;
    const before = await openStream(`${url}/events?topic=d`);
    await before.until("the stream to open", (s) => s.retry !== undefined);

    const acknowledged = new Set<string>();
    let killed = false;
    let next = 0;
    const publisher = async () => {
      // Bounded: stops at the kill, or after 5,000 publishes at most.
      while (!killed && next < 5_000) {
        const i = next++;
        try {
          const { status, json } = await publishTo(url, { topic: "d", data: `${i}` });
          if (status === 201 && json.id) acknowledged.add(json.id);
        } catch {
          // the connection died with the process: this publish was not acknowledged
        }
      }
    };
    const publishing = Promise.all(Array.from({ length: 8 }, publisher));
    await waitFor("200 acknowledged publishes", () => acknowledged.size >= 200, 20_000);
    first.child.kill("SIGKILL");
    killed = true;
    await first.exit;
    await publishing;
    await before.until("the stream to break", (s) => s.ended);
    const lastSeen = before.events.at(-1)?.lastEventId;
    expect(lastSeen).toBeDefined();

    const second = runHerald(env);
    running.push(second);
    const url2 = await second.url;
    const after = await openStream(`${url2}/events?topic=d`, { "last-event-id": lastSeen as string });
    const end = await publishTo(url2, { topic: "d", data: "end" });
    expect(end.status).toBe(201);
    await after.until("the end marker", (s) => s.events.at(-1)?.data === "end", 20_000);

    const ids = [...before.events, ...after.events.slice(0, -1)].map((e) => e.lastEventId);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of acknowledged) expect(ids).toContain(id);
    const seqs = [...ids, end.json.id as string].map(seqOf);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    after.close();
  });

  it("refuses to start a second process on the same database file", async () => {
    const env = { BROKER: "sqlite", DATABASE_PATH: join(mkdtempSync(join(tmpdir(), "herald-db-")), "herald.db") };
    const owner = runHerald(env);
    running.push(owner);
    await owner.url;
    const intruder = runHerald(env);
    running.push(intruder);
    expect((await intruder.exit).code).not.toBe(0);
    expect(intruder.stderr() + intruder.stdout()).toContain("is in use by another Herald process");
  });
});
