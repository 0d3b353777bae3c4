import { request } from "undici";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startServer, type TestServer } from "../helpers/server.js";
import { openStream } from "../helpers/stream.js";

let server: TestServer;
beforeEach(async () => {
  server = await startServer();
});
afterEach(() => server.close());

describe("dashboard response headers", () => {
  it.each(["/", "/app.js", "/style.css"])(
    "%s allows only Herald's own scripts and styles, and no sniffing",
    async (path) => {
      const res = await request(`${server.url}${path}`);
      await res.body.dump();
      expect(res.statusCode).toBe(200);
      expect(res.headers["x-content-type-options"]).toBe("nosniff");
      const csp = String(res.headers["content-security-policy"]);
      const directives = new Map(
        csp.split(";").map((d) => {
          const [name = "", ...values] = d.trim().split(/\s+/);
          return [name, values.join(" ")];
        }),
      );
      expect(directives.get("default-src")).toBe("'self'");
      expect(directives.get("script-src")).toBe("'self'");
      expect(directives.get("style-src")).toBe("'self'");
      expect(directives.get("object-src")).toBe("'none'");
      expect(csp).not.toContain("unsafe-inline");
      expect(csp).not.toContain("unsafe-eval");
      // Over plain HTTP these would break the page or mean nothing.
      expect(csp).not.toContain("upgrade-insecure-requests");
      expect(res.headers["strict-transport-security"]).toBeUndefined();
    },
  );

  it("leaves event streams and the API with their own headers, untouched by the dashboard's", async () => {
    const stream = await openStream(`${server.url}/events`);
    expect(stream.status).toBe(200);
    expect(stream.headers["content-type"]).toBe("text/event-stream; charset=utf-8");
    expect(stream.headers["cache-control"]).toBe("no-cache");
    expect(stream.headers["content-security-policy"]).toBeUndefined();
    await stream.until("the retry line", (s) => s.retry !== undefined);
    stream.close();
    const health = await request(`${server.url}/health`);
    expect(await health.body.json()).toEqual({ status: "ok" });
    expect(health.headers["content-security-policy"]).toBeUndefined();
  });
});
