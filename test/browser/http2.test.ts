import type { Http2ServerRequest } from "node:http2";
import type { Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type Chromium, launchChromium, skipBrowserTests } from "../helpers/browser.js";
import { startServer, type TestServer } from "../helpers/server.js";
import { createCertificate } from "../helpers/tls.js";
import { waitFor } from "../helpers/wait.js";

const SOURCES = 12;
let chromium: Chromium;
let server: TestServer | undefined;

/** In `page`, opens `SOURCES` EventSources to the page's own origin, counting opens and events. */
async function openSources(page: Page): Promise<void> {
  await page.evaluate((count) => {
    const state = { open: 0, received: 0, sources: [] as EventSource[] };
    (globalThis as unknown as { sse: typeof state }).sse = state;
    for (let i = 0; i < count; i++) {
      const source = new EventSource(`/events?topic=wall&topic=wall-${i}`);
      source.onopen = () => state.open++;
      source.onmessage = () => state.received++;
      state.sources.push(source);
    }
  }, SOURCES);
}

/** `{ open, received, connecting }` as the page sees them. */
function pageState(page: Page) {
  return page.evaluate(() => {
    const { open, received, sources } = (
      globalThis as unknown as { sse: { open: number; received: number; sources: EventSource[] } }
    ).sse;
    return { open, received, connecting: sources.filter((s) => s.readyState === EventSource.CONNECTING).length };
  });
}

describe.skipIf(skipBrowserTests())("a page with 12 EventSources to one origin", () => {
  beforeAll(async () => {
    chromium = await launchChromium({ ignoreHTTPSErrors: true });
  });
  afterAll(() => chromium?.close());
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it("gets all 12 open over HTTP/2, on one connection, and each receives the event", async () => {
    const certificate = createCertificate();
    server = await startServer({ tlsCertFile: certificate.certFile, tlsKeyFile: certificate.keyFile });
    const versions: string[] = [];
    const sessions = new Set<unknown>();
    server.app.server.on("request", (req: Http2ServerRequest) => {
      if (!req.url?.startsWith("/events?")) return;
      versions.push(req.httpVersion);
      sessions.add(req.stream?.session);
    });
    const page = await chromium.newPage();
    await page.goto(`${server.url}/health`);
    await openSources(page);
    const s = server;
    await waitFor("12 streams on the server", async () => (await s.stats()).connections === SOURCES, 10_000);
    await server.publish({ topic: "wall", data: "to all twelve" });
    await waitFor(
      "every source to receive the event",
      async () => (await pageState(page)).received === SOURCES,
      10_000,
    );
    expect(await pageState(page)).toEqual({ open: SOURCES, received: SOURCES, connecting: 0 });
    expect(versions).toEqual(Array(SOURCES).fill("2.0"));
    // The twelve streams share one connection.
    expect(sessions.size).toBe(1);
    expect(page.errors).toEqual([]);
    await page.close();
  });

  it("over plain HTTP/1.1, opens only 6: the seventh waits for a free connection", async () => {
    server = await startServer();
    const page = await chromium.newPage();
    await page.goto(`${server.url}/health`);
    await openSources(page);
    const s = server;
    await waitFor("6 streams on the server", async () => (await s.stats()).connections === 6, 10_000);
    // Published once the six are open: every open source gets it, so only the open ones count.
    await server.publish({ topic: "wall", data: "to the open ones" });
    await waitFor("the open sources to receive the event", async () => (await pageState(page)).received === 6, 10_000);
    expect(await pageState(page)).toEqual({ open: 6, received: 6, connecting: SOURCES - 6 });
    expect((await server.stats()).connections).toBe(6);
    await page.close();
  });
});
