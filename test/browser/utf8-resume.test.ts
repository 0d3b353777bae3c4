import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Chromium, launchChromium, skipBrowserTests } from "../helpers/browser.js";
import { startServer } from "../helpers/server.js";
import { waitFor } from "../helpers/wait.js";

let chromium: Chromium;

describe.skipIf(skipBrowserTests())("Chromium's EventSource", () => {
  beforeAll(async () => {
    chromium = await launchChromium();
  });
  afterAll(() => chromium?.close());

  it("resumes after a non-ASCII id, which it sends back in Last-Event-ID as UTF-8", async () => {
    // Long enough for the test to publish while the page waits to reconnect.
    const server = await startServer({ retryMs: 1_500 });
    const page = await chromium.newPage();
    // Each stream request: the Last-Event-ID bytes as they came on the wire, and the socket to cut.
    const requests: { lastEventId: Buffer | undefined; socket: Socket }[] = [];
    server.app.server.on("request", (req: IncomingMessage) => {
      if (!req.url?.startsWith("/events?topic=u")) return;
      const header = req.headers["last-event-id"] as string | undefined;
      // Node hands header bytes over as latin1: this gives back the bytes themselves.
      requests.push({
        lastEventId: header === undefined ? undefined : Buffer.from(header, "latin1"),
        socket: req.socket,
      });
    });
    try {
      await page.goto(`${server.url}/health`);
      await page.evaluate(() => {
        const w = globalThis as unknown as { received: string[] };
        w.received = [];
        const source = new EventSource("/events?topic=u");
        source.onmessage = (e) => w.received.push(e.data);
        source.addEventListener("reset", () => w.received.push("reset"));
      });
      const received = () => page.evaluate(() => (globalThis as unknown as { received: string[] }).received);
      await waitFor("the stream to open", () => requests.length === 1);
      await server.publish({ topic: "u", id: "café-1", data: "first" });
      await waitFor("the first event", async () => (await received()).length === 1);
      requests[0]?.socket.destroy();
      await waitFor("the server to see the cut", async () => (await server.stats()).connections === 0);
      await server.publish({ topic: "u", data: "second" });
      expect(requests).toHaveLength(1);
      await waitFor("the replay after the reconnect", async () => (await received()).length === 2, 10_000);
      expect(await received()).toEqual(["first", "second"]);
      expect(requests[1]?.lastEventId).toEqual(Buffer.from("café-1", "utf8"));
      expect(page.errors).toEqual([]);
    } finally {
      await page.close();
      await server.close();
    }
  });
});
