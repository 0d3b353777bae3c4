import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { Agent, getGlobalDispatcher, setGlobalDispatcher } from "undici";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { StoredEvent } from "../../src/broker/broker.js";
import { SqliteBroker } from "../../src/broker/sqlite-broker.js";
import { type Chromium, launchChromium, skipBrowserTests } from "../helpers/browser.js";
import { startServer, type TestServer } from "../helpers/server.js";

let chromium: Chromium;
let page: (Page & { errors: Error[] }) | undefined;
const servers: TestServer[] = [];
const folders: string[] = [];

/** A fresh SQLite database file: history that survives a restart. */
function database(): string {
  const folder = mkdtempSync(join(tmpdir(), "herald-dashboard-"));
  folders.push(folder);
  return join(folder, "herald.db");
}

/** Herald with durable history in `databasePath`, keeping `historySize` events. */
async function startHerald(databasePath: string, historySize: number, port = 0) {
  const server = await startServer({ broker: "sqlite", databasePath, historySize, retryMs: 200 }, port);
  servers.push(server);
  return server;
}

/**
 * Publishes into the database while no Herald runs (the file is Herald's alone while it runs):
 * these are the events published while the page was away.
 */
async function publishWhileDown(databasePath: string, historySize: number, data: string[]): Promise<StoredEvent[]> {
  const broker = SqliteBroker.open({ path: databasePath, historySize });
  try {
    const events: StoredEvent[] = [];
    for (const d of data) events.push((await broker.publish({ topic: "news", data: d })).event);
    return events;
  } finally {
    await broker.close();
  }
}

/** Stops `server` with the page still open; resolves once the page counts down to its next attempt. */
async function stop(server: TestServer, p: Page) {
  await server.close();
  // The test's own HTTP client may hold a kept-alive socket to the stopped server.
  const stale = getGlobalDispatcher();
  setGlobalDispatcher(new Agent());
  await stale.close();
  await p.locator("#state", { hasText: /^reconnecting$/ }).waitFor();
  await p.locator("#retry-in", { hasText: /^(in \d+ s|now…)$/ }).waitFor();
}

const row = (p: Page, id: string) => p.locator(`#feed li[data-id="${id}"]`);

/**
 * The page follows `news` on a Herald keeping `historySize` events and sees one event; Herald
 * stops, `whileDown` is published, and Herald starts again on the same port.
 */
async function restartUnderThePage(historySize: number, whileDown: string[]) {
  const db = database();
  const first = await startHerald(db, historySize);
  const p = await chromium.newPage();
  page = p;
  await p.goto(`${first.url}/?topic=news`);
  await p.locator("#state", { hasText: /^open$/ }).waitFor();
  const seen = await first.publish({ topic: "news", data: "the last one seen" });
  await row(p, seen.id).waitFor();

  await stop(first, p);
  const missed = await publishWhileDown(db, historySize, whileDown);
  const second = await startHerald(db, historySize, Number(new URL(first.url).port));
  expect(second.url).toBe(first.url);
  return { page: p, seen, missed, second };
}

describe.skipIf(skipBrowserTests())("the dashboard across a server restart", () => {
  beforeAll(async () => {
    chromium = await launchChromium();
  });
  afterAll(() => chromium?.close());
  afterEach(async () => {
    const errors = page?.errors ?? [];
    await page?.close();
    page = undefined;
    await Promise.all(servers.splice(0).map((s) => s.close()));
    for (const folder of folders.splice(0)) rmSync(folder, { recursive: true, force: true });
    expect(errors).toEqual([]);
  });

  it("reconnects by itself on the same port and replays what was published meanwhile, with a notice", async () => {
    const { page, seen, missed, second } = await restartUnderThePage(100, ["missed 1", "missed 2"]);
    await page.locator("#state", { hasText: /^open$/ }).waitFor();
    await page.locator("#notice", { hasText: "2 missed events replayed" }).waitFor();
    const notice = (await page.locator("#notice-text").textContent()) ?? "";
    expect(notice).toMatch(new RegExp(`^Reconnected after \\d+\\.\\d s away and resumed after #${seen.id}: `));
    for (const event of missed) {
      await row(page, event.id).waitFor();
      expect(await row(page, event.id).getAttribute("class")).toContain("replayed");
      expect(await row(page, event.id).locator(".badge").textContent()).toBe("replayed");
    }

    const live = await second.publish({ topic: "news", data: "after the restart" });
    await row(page, live.id).waitFor();
    expect(await row(page, live.id).getAttribute("class")).not.toContain("replayed");
    expect(await page.locator("#feed li").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-id")))).toEqual([
      live.id,
      ...missed.map((e) => e.id).reverse(),
      seen.id,
    ]);
    await page.locator("#last-id", { hasText: live.id }).waitFor();
  });

  it("shows a reset when the events it missed are no longer in history", async () => {
    // More than history holds: the page's last id is pushed out.
    const { page, seen, second } = await restartUnderThePage(3, ["lost 1", "lost 2", "lost 3", "lost 4", "lost 5"]);
    const notice = page.locator("#notice[data-kind=warning]", { hasText: "Events may have been lost" });
    await notice.waitFor();
    expect(await notice.textContent()).toContain(`no longer had #${seen.id} in its history`);
    const reset = page.locator("#feed li.reset");
    await reset.waitFor();
    expect(await reset.locator(".name").textContent()).toBe("reset");
    expect(await page.locator("#state").textContent()).toBe("open");

    const live = await second.publish({ topic: "news", data: "after the reset" });
    await row(page, live.id).waitFor();
  });
});
