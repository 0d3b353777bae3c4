import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { request } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import { startServer, type TestServer } from "../helpers/server.js";
import { openStream } from "../helpers/stream.js";
import { hs256, SECRET } from "../helpers/tokens.js";

const run = promisify(execFile);
const SCRIPT = fileURLToPath(new URL("../../examples/symfony-mercure-publish.php", import.meta.url));
const HAS_SYMFONY_MERCURE =
  existsSync("/usr/bin/php") && existsSync("/usr/share/php/Symfony/Component/Mercure/autoload.php");

let server: TestServer;
afterEach(() => server?.close());

// Debian's php-cli and php-symfony-mercure (.ci/run installs them); skipped on a machine without
// them, never in CI, where their absence fails the run.
describe.skipIf(!HAS_SYMFONY_MERCURE && !process.env.CI)("Symfony's Mercure component publishing to Herald", () => {
  it("publishes a public update with two topics and a private one, received as Mercure subscribers expect", async () => {
    server = await startServer({ publisherJwtKey: SECRET, subscriberJwtKey: SECRET });
    const hub = `${server.url}/.well-known/mercure`;
    const authorPage = await openStream(`${hub}?topic=${encodeURIComponent("https://example.com/authors/{id}")}`);
    const reader = await openStream(`${hub}?topic=${encodeURIComponent("https://example.com/books/1")}`, {
      authorization: `Bearer ${await hs256({ subscribe: ["https://example.com/users/7/{+rest}"] })}`,
    });
    for (const s of [authorPage, reader]) await s.until("open", (x) => x.retry !== undefined);

    const { stdout } = await run("php", [SCRIPT], {
      env: { ...process.env, MERCURE_URL: hub, MERCURE_JWT: await hs256({ publish: ["https://example.com/{+any}"] }) },
    });
    const ids = JSON.parse(stdout) as { public: string; private: string };
    expect(ids.public).toBe("book-1-v2");

    await reader.until("both updates", (s) => s.events.length === 2);
    expect(reader.events).toEqual([
      { type: "book.updated", lastEventId: "book-1-v2", data: '{"title":"Dune","status":"in stock"}' },
      { type: "message", lastEventId: ids.private, data: '{"message":"your order shipped"}' },
    ]);
    expect(reader.raw).toContain("retry: 5000");
    // The author page has no token: it gets the public update only.
    await authorPage.until("the public update", (s) => s.events.length === 1);
    const res = await request(`${server.url}/events`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${await hs256({ publish: ["*"] })}` },
      body: JSON.stringify({ topic: "https://example.com/authors/8", data: "probe" }),
    });
    const probe = (await res.body.json()) as { id: string };
    await authorPage.until("the probe", (s) => s.events.length === 2);
    expect(authorPage.events.map((e) => e.lastEventId)).toEqual(["book-1-v2", probe.id]);
    authorPage.close();
    reader.close();
  });
});
