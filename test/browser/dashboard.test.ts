import type { Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Config } from "../../src/config.js";
import { type Chromium, launchChromium, skipBrowserTests } from "../helpers/browser.js";
import { startServer, type TestServer } from "../helpers/server.js";
import { type OpenStream, openStream } from "../helpers/stream.js";
import { hs256, SECRET } from "../helpers/tokens.js";

let chromium: Chromium;
let server: TestServer | undefined;
let page: (Page & { errors: Error[] }) | undefined;
const streams: OpenStream[] = [];

/** Herald on port 0 and the dashboard open in a new tab, its feed open. */
async function openDashboard(overrides: Partial<Config> = {}, query = "") {
  server = await startServer(overrides);
  page = await chromium.newPage();
  await page.goto(`${server.url}/${query}`);
  await page.locator("#state", { hasText: /^open$/ }).waitFor();
  return { server, page };
}

const row = (p: Page, id: string) => p.locator(`#feed li[data-id="${id}"]`);

describe.skipIf(skipBrowserTests())("the dashboard in Chromium", () => {
  beforeAll(async () => {
    chromium = await launchChromium();
  });
  afterAll(() => chromium?.close());
  afterEach(async () => {
    for (const s of streams.splice(0)) s.close();
    const errors = page?.errors ?? [];
    await page?.close();
    page = undefined;
    await server?.close();
    server = undefined;
    expect(errors).toEqual([]);
  });

  it("opens its feed and shows the state as open", async () => {
    const { page } = await openDashboard();
    expect(await page.title()).toBe("Herald");
    expect(await page.locator("#state").getAttribute("data-state")).toBe("open");
    await page.locator("#stats-state", { hasText: /^live$/ }).waitFor();
    // An empty feed says how to publish, to this very server.
    expect(await page.locator("#curl-example").textContent()).toBe(
      `curl -d topic=news -d data=hello ${server?.url}/events`,
    );
    const { id } = await (server as TestServer).publish({ data: "first" });
    await row(page, id).waitFor();
    expect(await page.locator("#feed-empty").isVisible()).toBe(false);
  });

  it("publishes through the form and shows the event in the feed with the id Herald answered", async () => {
    const { page } = await openDashboard();
    await page.fill("#pub-topic", "orders/42");
    await page.fill("#pub-event", "shipped");
    await page.check("input[name=format][value=json]");
    await page.fill("#pub-data", '{"carrier": "ups", "parcels": 2}');
    await page.click("#publish button[type=submit]");
    const result = page.locator("#publish-result", { hasText: /^Published #/ });
    await result.waitFor();
    const id = /^Published #(\S+) on orders\/42$/.exec((await result.textContent()) ?? "")?.[1];
    expect(id).toBeTruthy();

    const event = row(page, id as string);
    await event.waitFor();
    expect(await event.locator(".topic").textContent()).toBe("orders/42");
    expect(await event.locator(".name").textContent()).toBe("shipped");
    expect(await event.locator(".id").textContent()).toBe(`#${id}`);
    expect(await event.locator("pre.data").textContent()).toBe('{\n  "carrier": "ups",\n  "parcels": 2\n}');
    await page.locator("#last-id", { hasText: id }).waitFor();
  });

  it("refuses data that is not JSON before sending it, and shows the server's own error message", async () => {
    const { page, server } = await openDashboard();
    await page.check("input[name=format][value=json]");
    await page.fill("#pub-data", "{not json");
    await page.click("#publish button[type=submit]");
    await page.locator("#data-error", { hasText: /^Not valid JSON/ }).waitFor();
    expect(await page.locator("#pub-data").getAttribute("aria-invalid")).toBe("true");

    await page.check("input[name=format][value=text]");
    await page.fill("#pub-topic", "t".repeat(1025));
    await page.click("#publish button[type=submit]");
    await page.locator("#publish-result", { hasText: /^400 HERALD_INVALID_TOPIC: Invalid topic/ }).waitFor();
    expect((await server.stats()).published).toBe(0);
  });

  it("clears the last publish's green result when the data turns out not to be JSON", async () => {
    const { page } = await openDashboard();
    await page.fill("#pub-data", "fine");
    await page.click("#publish button[type=submit]");
    await page.locator("#publish-result", { hasText: /^Published #/ }).waitFor();
    await page.check("input[name=format][value=json]");
    await page.fill("#pub-data", "{not json");
    await page.click("#publish button[type=submit]");
    await page.locator("#data-error", { hasText: /^Not valid JSON/ }).waitFor();
    expect(await page.locator("#publish-result").textContent()).toBe("");
    expect(await page.locator("#publish-result").getAttribute("data-outcome")).toBeNull();
  });

  it("starts the new feed empty when the topics change: no old events, no old last id", async () => {
    const { page, server } = await openDashboard();
    const old = await server.publish({ topic: "before", data: "old feed" });
    await row(page, old.id).waitFor();
    await page.locator("#last-id", { hasText: old.id }).waitFor();

    await page.fill("#topics", "after");
    await page.click("#subscribe button[type=submit]");
    await page.locator("#feed-status", { hasText: "0 received · 0 shown" }).waitFor();
    expect(await page.locator("#feed li").count()).toBe(0);
    expect(await page.locator("#last-id").textContent()).toBe("–");
    await page.locator("#state", { hasText: /^open$/ }).waitFor();
    const fresh = await server.publish({ topic: "after", data: "new feed" });
    await row(page, fresh.id).waitFor();
    await page.locator("#last-id", { hasText: fresh.id }).waitFor();
    expect(await page.locator("#feed li").count()).toBe(1);
  });

  it("shows an event published with undici: topic, name, id and pretty-printed data", async () => {
    const { page, server } = await openDashboard();
    const { id } = await server.publish({ topic: "news", event: "update", data: { headline: "hi" } });
    const event = row(page, id);
    await event.waitFor();
    expect(await event.locator(".meta").textContent()).toMatch(
      new RegExp(`^\\d\\d:\\d\\d:\\d\\d\\.\\d{3}newsupdate#${id}$`),
    );
    expect(await event.locator("pre.data").textContent()).toBe('{\n  "headline": "hi"\n}');
  });

  it("follows two topics at once, and only those", async () => {
    const { page, server } = await openDashboard();
    await page.fill("#topics", "alpha, beta");
    await page.click("#subscribe button[type=submit]");
    await page.locator("#stats tr[data-topic=beta]").waitFor();
    expect(new URL(page.url()).search).toBe("?topic=alpha&topic=beta");

    const a = await server.publish({ topic: "alpha", data: "a" });
    const skipped = await server.publish({ topic: "gamma", data: "not followed" });
    const b = await server.publish({ topic: "beta", data: "b" });
    await row(page, b.id).waitFor();
    // Events reach a stream in publish order: gamma's would be here before beta's.
    expect(await page.locator("#feed li").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-id")))).toEqual([
      b.id,
      a.id,
    ]);
    expect(await row(page, skipped.id).count()).toBe(0);
  });

  it("runs a clock from /ticks", async () => {
    const { page } = await openDashboard({ tickMs: 100 });
    await page.locator("#clock-seq", { hasText: /^tick ([3-9]|\d\d+)$/ }).waitFor();
    expect(await page.locator("#clock-time").textContent()).toMatch(/^\d\d:\d\d:\d\d$/);
    expect(await page.locator("#clock").getAttribute("data-state")).toBe("open");
  });

  it("shows the service change when a second client connects", async () => {
    const { page, server } = await openDashboard();
    // The page's own three streams: the feed, the clock and the stats.
    await page.locator('[data-stat="connections"]', { hasText: /^3$/ }).waitFor();
    expect(await page.locator("#stats tr[data-topic=watched]").count()).toBe(0);

    streams.push(await openStream(`${server.url}/events?topic=watched`));
    await page.locator('[data-stat="connections"]', { hasText: /^4$/ }).waitFor();
    const topic = page.locator("#stats tr[data-topic=watched]");
    await topic.waitFor();
    expect(await topic.locator("td").first().textContent()).toBe("1");

    await server.publish({ topic: "watched", data: "x" });
    await page.locator('[data-stat="published"]', { hasText: /^1$/ }).waitFor();
  });

  it("pauses, filters by event name and clears, while events keep arriving", async () => {
    const { page, server } = await openDashboard();
    const first = await server.publish({ topic: "t", event: "alert", data: "1" });
    await row(page, first.id).waitFor();

    await page.click("#pause");
    expect(await page.locator("#pause").getAttribute("aria-pressed")).toBe("true");
    const whilePaused = await server.publish({ topic: "t", event: "info", data: "2" });
    await page.locator("#feed-status", { hasText: "paused, 1 new" }).waitFor();
    expect(await row(page, whilePaused.id).count()).toBe(0);
    await page.click("#pause");
    await row(page, whilePaused.id).waitFor();

    await page.fill("#filter", "ALE");
    await page.locator("#feed-status", { hasText: "2 received · 1 shown" }).waitFor();
    expect(await row(page, first.id).count()).toBe(1);
    await page.fill("#filter", "");
    await page.locator("#feed-status", { hasText: "2 received · 2 shown" }).waitFor();

    await page.click("#clear");
    await page.locator("#feed-status", { hasText: "0 received · 0 shown" }).waitFor();
    expect(await page.locator("#feed li").count()).toBe(0);
  });

  it("keeps the list bounded, folds long data, and never renders data as HTML", async () => {
    const { page, server } = await openDashboard({ historySize: 1_000 });
    for (let i = 0; i < 250; i++) await server.publish({ topic: "t", data: `${i}` });
    const hostile = await server.publish({ topic: "t", data: '<img src=x id="injected"><b>bold</b>' });
    const long = await server.publish({
      topic: "t",
      event: "big",
      data: { items: Array.from({ length: 40 }, (_, i) => i) },
    });
    await row(page, long.id).waitFor();
    await page.locator("#feed-status", { hasText: "252 received · 200 shown" }).waitFor();
    expect(await page.locator("#feed li").count()).toBe(200);

    const folded = row(page, long.id).locator("details.data");
    expect(await folded.isVisible()).toBe(true);
    expect(await row(page, long.id).locator("pre.data").isVisible()).toBe(false);
    expect(await folded.locator("summary").textContent()).toMatch(/^\{"items":\[0,1,2,.* … \(\d+ characters\)$/);
    await folded.locator("summary").press("Enter");
    expect(await folded.locator("pre").textContent()).toContain('"items": [\n    0,\n    1,');

    expect(await row(page, hostile.id).locator("pre.data").textContent()).toBe('<img src=x id="injected"><b>bold</b>');
    expect(await page.locator("#injected, #feed b").count()).toBe(0);
  });

  it("runs within its Content-Security-Policy: no inline script or style, nothing from elsewhere", async () => {
    server = await startServer();
    page = await chromium.newPage();
    const violations: string[] = [];
    page.on("console", (message) => {
      if (message.text().includes("Content Security Policy")) violations.push(message.text());
    });
    const response = await page.goto(`${server.url}/`);
    expect(response?.headers()["content-security-policy"]).toMatch(/script-src 'self';.*style-src 'self'/);
    await page.locator("#state", { hasText: /^open$/ }).waitFor();
    await page.locator("#stats-state", { hasText: /^live$/ }).waitFor();
    const { id } = await server.publish({ data: "under CSP" });
    await row(page, id).waitFor();
    // The stylesheet applied: the state is drawn as a pill.
    expect(await page.evaluate('getComputedStyle(document.getElementById("state")).borderRadius')).toBe("999px");
    expect(violations).toEqual([]);
  });

  it("can be used with the keyboard alone", async () => {
    const { page } = await openDashboard();
    await page.keyboard.press("Tab");
    expect(await page.locator(":focus").textContent()).toBe("Skip to the live feed");
    await page.keyboard.press("Enter");
    expect(await page.locator(":focus").getAttribute("id")).toBe("feed-title");

    // Tab order from the feed's title: the topics box, Subscribe, the event-name box, Pause.
    for (const id of ["topics", "", "filter", "pause"]) {
      await page.keyboard.press("Tab");
      if (id) expect(await page.locator(":focus").getAttribute("id")).toBe(id);
    }
    await page.keyboard.press("Space");
    expect(await page.locator("#pause").getAttribute("aria-pressed")).toBe("true");
    await page.keyboard.press("Space");

    await page.focus("#pub-data");
    await page.keyboard.type("typed, then Ctrl+Enter");
    await page.keyboard.press("Control+Enter");
    const result = page.locator("#publish-result", { hasText: /^Published #/ });
    await result.waitFor();
    const id = /#(\S+)/.exec((await result.textContent()) ?? "")?.[1] as string;
    await row(page, id).waitFor();
  });

  it("fits a phone's screen without scrolling sideways, in dark mode too", async () => {
    server = await startServer();
    page = await chromium.newPage();
    await page.setViewportSize({ width: 375, height: 740 });
    await page.emulateMedia({ colorScheme: "dark" });
    await page.goto(`${server.url}/`);
    await page.locator("#state", { hasText: /^open$/ }).waitFor();
    await server.publish({ topic: "a-rather-long-topic-name/with/parts", data: { long: "x".repeat(400) } });
    await page.locator("#feed li").first().waitFor();
    const [scrollWidth, clientWidth] = (await page.evaluate(
      "[document.documentElement.scrollWidth, document.documentElement.clientWidth]",
    )) as [number, number];
    expect(scrollWidth).toBeLessThanOrEqual(clientWidth);
    // One column: the publish form comes below the feed.
    const feed = await page.locator(".feed-panel").boundingBox();
    const publish = await page.locator("#publish").boundingBox();
    expect(publish?.y).toBeGreaterThan((feed?.y ?? 0) + (feed?.height ?? 0) - 1);
    // Dark: the page background is dark.
    const background = await page.evaluate("getComputedStyle(document.documentElement).backgroundColor");
    expect(background).toBe("rgb(15, 17, 21)");
  });

  it("with keys set, says why stats and publishing are refused, works once given a token, and unticks private after a publish", async () => {
    const { page } = await openDashboard({ subscriberJwtKey: SECRET, publisherJwtKey: SECRET });
    // Public events need no token: the feed is open. The stats name every topic: they need one.
    await page.locator("#stats-state", { hasText: /^refused$/ }).waitFor();
    // Advice for a person at this page, not for a curl user: no Authorization header to send.
    expect(await page.locator("#stats-refused").textContent()).toBe(
      "401 HERALD_TOKEN_MISSING: The service figures need a token, because they name every topic. Paste one under Token, at the top of the page.",
    );
    await page.fill("#pub-data", "no token");
    await page.click("#publish button[type=submit]");
    await page.locator("#publish-result", { hasText: /^401 HERALD_TOKEN_MISSING: / }).waitFor();
    expect(await page.locator("#publish-result").textContent()).toBe(
      "401 HERALD_TOKEN_MISSING: Publishing needs a token. Paste one under Token, at the top of the page.",
    );

    await page.click("#access summary");
    await page.fill("#token", await hs256({ publish: ["*"], subscribe: ["*"] }));
    await page.click("#token-form button[type=submit]");
    await page.locator("#token-state", { hasText: "Token in use." }).waitFor();
    await page.locator("#stats-state", { hasText: /^live$/ }).waitFor();
    await page.locator("#state", { hasText: /^open$/ }).waitFor();

    await page.fill("#pub-topic", "vip");
    await page.fill("#pub-data", "for token holders");
    await page.click("#publish summary");
    await page.check("#pub-private");
    await page.click("#publish button[type=submit]");
    const result = page.locator("#publish-result", { hasText: /^Published #/ });
    await result.waitFor();
    const id = /#(\S+)/.exec((await result.textContent()) ?? "")?.[1] as string;
    // Private is a choice per event: the box is unticked for the next one.
    expect(await page.isChecked("#pub-private")).toBe(false);
    // The feed now sends the token (as the herald_token cookie): the private event reaches it, marked.
    await row(page, id).waitFor();
    expect(await row(page, id).locator(".badge").textContent()).toBe("private");

    await page.click("#token-forget");
    await page.locator("#stats-state", { hasText: /^refused$/ }).waitFor();
  });
});
