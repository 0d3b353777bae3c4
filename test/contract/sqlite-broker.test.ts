import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import type { StoredEvent } from "../../src/broker/broker.js";
import { SqliteBroker } from "../../src/broker/sqlite-broker.js";
import { waitFor } from "../helpers/wait.js";
import { describeBrokerContract } from "./broker-contract.js";

const freshPath = () => join(mkdtempSync(join(tmpdir(), "herald-sqlite-")), "herald.db");

describeBrokerContract("SqliteBroker", async (options) => SqliteBroker.open({ ...options, path: freshPath() }), {
  retiresIds: true,
});

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
