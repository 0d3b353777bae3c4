import { type ChildProcess, execFile, spawn } from "node:child_process";
import { EventSource } from "eventsource";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../../src/app.js";
import { DEFAULT_CONFIG } from "../../src/config.js";
import { startServer, type TestServer } from "../helpers/server.js";
import { openStream } from "../helpers/stream.js";
import { createCertificate, fetchThrough, type TestCertificate, tlsAgent } from "../helpers/tls.js";
import { waitFor } from "../helpers/wait.js";

let certificate: TestCertificate;
let server: TestServer;
const children: ChildProcess[] = [];
beforeAll(() => {
  certificate = createCertificate();
});
afterEach(async () => {
  for (const child of children.splice(0)) child.kill();
  await server?.close();
});

/** Herald over HTTPS with the test certificate. */
function startHttps(overrides: Parameters<typeof startServer>[0] = {}) {
  return startServer({ tlsCertFile: certificate.certFile, tlsKeyFile: certificate.keyFile, ...overrides });
}

/** `curl -sNi` on `protocol`, trusting the test certificate: output so far, and its exit. */
function curlStream(url: string, protocol: "--http2" | "--http1.1") {
  const curl = spawn("curl", ["-sNi", protocol, "--cacert", certificate.certFile, url]);
  children.push(curl);
  let out = "";
  curl.stdout.on("data", (chunk) => {
    out += chunk;
  });
  const exit = new Promise<number | null>((resolve) => curl.once("exit", resolve));
  return { output: () => out, exit };
}

/** Runs curl to completion; resolves with what it printed (`-w` output last). */
function curl(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("curl", ["-s", "--cacert", certificate.certFile, ...args], (err, stdout) =>
      err ? reject(err) : resolve(stdout),
    );
  });
}

describe("HTTPS with HTTP/2 and HTTP/1.1 on one port", () => {
  it("streams to curl --http2 and curl --http1.1 at once; a publish over HTTP/2 reaches both", async () => {
    server = await startHttps();
    const h2 = curlStream(`${server.url}/events?topic=both`, "--http2");
    const h1 = curlStream(`${server.url}/events?topic=both`, "--http1.1");
    await waitFor(
      "both curls to see the stream open",
      () => h2.output().includes("retry:") && h1.output().includes("retry:"),
    );
    expect(h2.output()).toMatch(/^HTTP\/2 200 ?\r\n/);
    expect(h1.output()).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    // Connection-specific headers are forbidden on HTTP/2 (RFC 9113 §8.2.2).
    expect(h2.output().toLowerCase()).not.toContain("connection:");
    expect(h1.output().toLowerCase()).toContain("connection: keep-alive");
    expect(h2.output().toLowerCase()).toContain("content-type: text/event-stream");

    const published = await curl([
      "--http2",
      "-w",
      "\n%{http_version}",
      "-H",
      "content-type: application/json",
      "-d",
      '{"topic":"both","data":"to every protocol"}',
      `${server.url}/events`,
    ]);
    expect(published).toMatch(/\n2$/);
    const { id } = JSON.parse(published.split("\n")[0] as string) as { id: string };
    for (const stream of [h2, h1]) {
      await waitFor("the event on both streams", () => stream.output().includes("data: to every protocol\n\n"));
      expect(stream.output()).toContain(`id: ${id}\ndata: to every protocol\n\n`);
    }

    // Shutdown ends both cleanly: curl exits 0 only when the response ended properly, not cut.
    await server.close();
    expect(await h2.exit).toBe(0);
    expect(await h1.exit).toBe(0);
  });

  it("answers every route over both protocols", async () => {
    server = await startHttps();
    for (const protocol of ["--http2", "--http1.1"]) {
      const version = protocol === "--http2" ? "2" : "1.1";
      for (const path of ["/health", "/stats", "/metrics", "/", "/app.js"]) {
        const out = await curl([
          protocol,
          "-o",
          "/dev/null",
          "-w",
          "%{http_code} %{http_version}",
          `${server.url}${path}`,
        ]);
        expect(`${path} ${out}`).toBe(`${path} 200 ${version}`);
      }
      const published = await curl([
        protocol,
        "-w",
        " %{http_code} %{http_version}",
        "-d",
        "data=form",
        `${server.url}/events`,
      ]);
      expect(published).toMatch(new RegExp(` 201 ${version.replace(".", "\\.")}$`));
      const missing = await curl([protocol, "-w", " %{http_code}", `${server.url}/nope`]);
      expect(missing).toContain('"code":"HERALD_NOT_FOUND"');
      expect(missing).toMatch(/ 404$/);
    }
    for (const h2 of [true, false]) {
      const dispatcher = tlsAgent(certificate.cert, h2);
      const ticks = await openStream(`${server.url}/ticks?interval=100`, {}, { dispatcher });
      const stats = await openStream(`${server.url}/stats/stream`, {}, { dispatcher });
      await ticks.take(2);
      await stats.until("a stats event", (s) => s.events.some((e) => e.type === "stats"));
      expect(ticks.headers.connection).toBe(h2 ? undefined : "keep-alive");
      ticks.close();
      stats.close();
      await dispatcher.destroy();
    }
  });

  it("serves the eventsource client over HTTP/2, Last-Event-ID replay included", async () => {
    server = await startHttps({ retryMs: 50 });
    const dispatcher = tlsAgent(certificate.cert);
    // Which protocol each stream request came in on, as the server saw it.
    const versions: string[] = [];
    server.app.server.on("request", (req: { url?: string; httpVersion: string }) => {
      if (req.url?.startsWith("/events?")) versions.push(req.httpVersion);
    });
    const first = await server.publish({ topic: "r", data: "one" });
    await server.publish({ topic: "r", data: "two" });
    await server.publish({ topic: "r", data: "three" });
    const received: { id: string; data: string }[] = [];
    const source = new EventSource(`${server.url}/events?topic=r`, {
      fetch: fetchThrough(dispatcher),
    });
    source.onmessage = (e) => received.push({ id: e.lastEventId, data: e.data });
    await new Promise<void>((resolve) => {
      source.onopen = () => resolve();
    });
    await server.publish({ topic: "r", data: "live" });
    await waitFor("the live event", () => received.length === 1);
    source.close();

    const resumed: string[] = [];
    const again = new EventSource(`${server.url}/events?topic=r&lastEventId=${encodeURIComponent(first.id)}`, {
      fetch: fetchThrough(dispatcher),
    });
    again.onmessage = (e) => resumed.push(e.data);
    await waitFor("the replay", () => resumed.length === 3);
    expect(resumed).toEqual(["two", "three", "live"]);
    again.close();
    expect(versions).toEqual(["2.0", "2.0"]);
    await dispatcher.destroy();
  });
});

describe("TLS settings at start-up", () => {
  it("refuses a certificate file it cannot read, naming the variable and the path", async () => {
    const config = { ...DEFAULT_CONFIG, logLevel: "silent" as const };
    await expect(
      buildApp({ ...config, tlsCertFile: "/nonexistent/cert.pem", tlsKeyFile: certificate.keyFile }),
    ).rejects.toThrow('TLS_CERT_FILE="/nonexistent/cert.pem" cannot be read (ENOENT)');
    await expect(
      buildApp({ ...config, tlsCertFile: certificate.keyFile, tlsKeyFile: certificate.keyFile }),
    ).rejects.toThrow(`TLS_CERT_FILE=${JSON.stringify(certificate.keyFile)} is not a PEM certificate`);
    const other = createCertificate();
    await expect(buildApp({ ...config, tlsCertFile: certificate.certFile, tlsKeyFile: other.keyFile })).rejects.toThrow(
      `TLS_KEY_FILE=${JSON.stringify(other.keyFile)} cannot serve TLS_CERT_FILE`,
    );
  });
});

afterAll(() => {
  for (const child of children) child.kill();
});
