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

/** Ids of the SQLite broker are `<database>-<sequence>`; anything else fails the test. */
function seqOf(id: string): number {
  const match = /^[0-9a-z]+-(\d+)$/.exec(id);
  if (match === null) throw new Error(`${JSON.stringify(id)} is not a SQLite broker id`);
  return Number(match[1]);
}

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
    const beforeIds = before.events.map((e) => e.lastEventId);
    // The live stream got (almost) every acknowledged event, so only a replay from an earlier id
    // proves that the restarted node kept them. Resume from 100 events before the
    // newest acknowledged one: the events acknowledged in the last moments before the kill are among them.
    const acked = [...acknowledged].sort((a, b) => seqOf(a) - seqOf(b));
    const resumeFrom = acked[acked.length - 100] as string;
    expect(beforeIds).toContain(resumeFrom);
    const mustReplay = acked.filter((id) => seqOf(id) > seqOf(resumeFrom));
    expect(mustReplay).toHaveLength(99);

    const second = runHerald(env);
    running.push(second);
    const url2 = await second.url;
    const after = await openStream(`${url2}/events?topic=d`, { "last-event-id": resumeFrom });
    const end = await publishTo(url2, { topic: "d", data: "end" });
    expect(end.status).toBe(201);
    await after.until("the end marker", (s) => s.events.at(-1)?.data === "end", 20_000);

    const replayed = after.events.slice(0, -1);
    expect(replayed.filter((e) => e.type !== "message")).toEqual([]);
    const replayedIds = replayed.map((e) => e.lastEventId);
    for (const id of mustReplay) expect(replayedIds).toContain(id);
    // What the first node streamed after that id, in the same order; then at most the events it
    // committed but had not yet written to the stream when it was killed.
    const streamedAfter = beforeIds.slice(beforeIds.indexOf(resumeFrom) + 1);
    expect(replayedIds.slice(0, streamedAfter.length)).toEqual(streamedAfter);
    for (const id of acked) expect([...beforeIds, ...replayedIds]).toContain(id);
    const seqs = [...replayedIds, end.json.id as string].map(seqOf);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(seqs.length);
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
