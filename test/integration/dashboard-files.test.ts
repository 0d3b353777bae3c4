import { readdirSync, readFileSync } from "node:fs";
import { request } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import { startServer, type TestServer } from "../helpers/server.js";

let server: TestServer;
afterEach(() => server.close());

const WEB = "web";
const files = readdirSync(WEB);

describe("the dashboard's files", () => {
  it("are served with an ETag and revalidated on every load, so an upgrade never runs stale code", async () => {
    server = await startServer();
    // Browsers run a module script only when it is served with a JavaScript MIME type.
    for (const [path, type] of [
      ["/", /^text\/html/],
      ["/app.js", /^(text|application)\/javascript/],
      ["/style.css", /^text\/css/],
    ] as const) {
      const res = await request(`${server.url}${path}`);
      await res.body.dump();
      expect(res.statusCode).toBe(200);
      expect(res.headers["content-type"]).toMatch(type);
      expect(res.headers["cache-control"]).toBe("no-cache");
      const etag = res.headers.etag as string;
      expect(etag).toBeTruthy();
      const again = await request(`${server.url}${path}`, { headers: { "if-none-match": etag } });
      await again.body.dump();
      expect(again.statusCode).toBe(304);
    }
  });

  it("keep every script and style in files, as a strict Content-Security-Policy requires", () => {
    const html = readFileSync(`${WEB}/index.html`, "utf8");
    expect(html).not.toMatch(/<style/i);
    expect(html).not.toMatch(/\sstyle=/i);
    expect(html).not.toMatch(/\son[a-z]+=/i);
    for (const script of html.match(/<script[^>]*>/gi) ?? []) expect(script).toMatch(/\ssrc="\/[^"]+"/);
    for (const file of files.filter((f) => f.endsWith(".js"))) {
      expect(readFileSync(`${WEB}/${file}`, "utf8"), file).not.toMatch(/setAttribute\(\s*["']style|\.style\./);
    }
  });

  it("never hand text to the HTML parser: event data only reaches the page as textContent", () => {
    for (const file of files.filter((f) => f.endsWith(".js"))) {
      expect(readFileSync(`${WEB}/${file}`, "utf8"), file).not.toMatch(
        /innerHTML|outerHTML|insertAdjacentHTML|document\.write|createContextualFragment|\beval\(|new Function/,
      );
    }
  });

  it("load nothing from outside Herald", () => {
    for (const file of files.filter((f) => /\.(html|js|css)$/.test(f))) {
      expect(readFileSync(`${WEB}/${file}`, "utf8"), file).not.toMatch(
        /(src|href)="?(https?:)?\/\/|url\(\s*["']?(https?:)?\/\//,
      );
    }
  });
});
