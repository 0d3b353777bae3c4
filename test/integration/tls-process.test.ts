import { writeFileSync } from "node:fs";
import { type ClientHttp2Session, connect } from "node:http2";
import { dirname } from "node:path";
import { EventSource } from "eventsource";
import { request } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import { type HeraldProcess, runHerald } from "../helpers/process.js";
import { SseParser } from "../helpers/sse-parser.js";
import { createCertificate, fetchThrough, peerCertificate, type TestCertificate, tlsAgent } from "../helpers/tls.js";
import { waitFor } from "../helpers/wait.js";

const running: HeraldProcess[] = [];
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const p of running.splice(0)) p.child.kill("SIGKILL");
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

/** `node dist/main.js` serving HTTPS with `certificate`. */
function runHttps(certificate: TestCertificate, env: Record<string, string> = {}): HeraldProcess {
  const herald = runHerald({ TLS_CERT_FILE: certificate.certFile, TLS_KEY_FILE: certificate.keyFile, ...env });
  running.push(herald);
  return herald;
}

async function publish(url: string, ca: Buffer, data: string): Promise<void> {
  const dispatcher = tlsAgent(ca);
  const res = await request(`${url}/events`, {
    dispatcher,
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ topic: "t", data }),
  });
  expect(res.statusCode).toBe(201);
  await res.body.dump();
  await dispatcher.destroy();
}

describe("certificate rotation", () => {
  it("on SIGHUP, serves the certificate now on disk to new connections while open streams keep streaming", async () => {
    const first = createCertificate();
    const herald = runHttps(first);
    const url = await herald.url;
    expect(url).toMatch(/^https:/);
    expect(await peerCertificate(url, [first.cert])).toEqual({ fingerprint256: first.fingerprint256, alpn: "h2" });

    // A stream on a connection made with the first certificate.
    const session: ClientHttp2Session = connect(url, { ca: first.cert });
    session.on("error", () => {});
    cleanups.push(() => session.destroy());
    const parser = new SseParser();
    const stream = session.request({ ":path": "/events?topic=t" });
    stream.setEncoding("utf8");
    stream.on("data", (text: string) => parser.feed(text));
    await waitFor("the stream to open", () => parser.retry !== undefined);

    // The renewal: new files renamed over the old ones, then the signal.
    const second = createCertificate(dirname(first.certFile));
    expect(second.fingerprint256).not.toBe(first.fingerprint256);
    herald.child.kill("SIGHUP");
    await waitFor("the reload to be logged", () => herald.stdout().includes("reloaded the TLS certificate"));
    expect(herald.stdout()).toContain(second.serialNumber);
    expect(await peerCertificate(url, [second.cert])).toEqual({ fingerprint256: second.fingerprint256, alpn: "h2" });

    await publish(url, second.cert, "after the reload");
    await waitFor("the old stream to get the event", () => parser.events.some((e) => e.data === "after the reload"));
    expect(stream.closed).toBe(false);

    // A broken renewal is refused: the certificate served so far stays, and so does the process.
    writeFileSync(first.certFile, "not a certificate");
    herald.child.kill("SIGHUP");
    await waitFor("the refusal to be logged", () => herald.stdout().includes("kept the TLS certificate"));
    expect(herald.stdout()).toContain("is not a PEM certificate");
    expect(await peerCertificate(url, [second.cert])).toEqual({ fingerprint256: second.fingerprint256, alpn: "h2" });
    expect(herald.child.exitCode).toBe(null);
  });
});

describe("shutdown over HTTP/2", () => {
  it("on SIGTERM, ends HTTP/2 streams within the grace period, and clients reconnect to the next process", async () => {
    const certificate = createCertificate();
    const first = runHttps(certificate, { RETRY_MS: "200" });
    const url = await first.url;
    const dispatcher = tlsAgent(certificate.cert);
    cleanups.push(() => dispatcher.destroy());
    let opens = 0;
    const received: string[] = [];
    const source = new EventSource(`${url}/events?topic=t`, {
      fetch: fetchThrough(dispatcher),
    });
    cleanups.push(() => source.close());
    source.onopen = () => opens++;
    source.onmessage = (e) => received.push(e.data);
    await waitFor("the stream to open", () => opens === 1);
    await publish(url, certificate.cert, "from the first");
    await waitFor("the first event", () => received.includes("from the first"));

    first.child.kill("SIGTERM");
    // close-with-grace exits 1 when closing outlasts its 5 s grace period; 0 means it finished in time.
    expect(await first.exit).toEqual({ code: 0, signal: null });

    // The same port, a new process: the client finds it by itself.
    const second = runHttps(certificate, { PORT: new URL(url).port, RETRY_MS: "200" });
    expect(await second.url).toBe(url);
    await waitFor("the client to reconnect", () => opens === 2, 10_000);
    await publish(url, certificate.cert, "from the second");
    await waitFor("the event from the new process", () => received.includes("from the second"));
  });
});

describe("TLS settings at start-up", () => {
  it("stops with a message naming the variable and the path when a file cannot be read", async () => {
    const certificate = createCertificate();
    const herald = runHerald({ TLS_CERT_FILE: certificate.certFile, TLS_KEY_FILE: "/nonexistent/key.pem" });
    running.push(herald);
    expect((await herald.exit).code).toBe(1);
    expect(herald.stderr()).toContain('TLS_KEY_FILE="/nonexistent/key.pem" cannot be read (ENOENT)');
  });

  it("stops when only one of the two is set", async () => {
    const herald = runHerald({ TLS_CERT_FILE: "/etc/cert.pem" });
    running.push(herald);
    expect((await herald.exit).code).toBe(1);
    expect(herald.stderr()).toContain("TLS_CERT_FILE is set but TLS_KEY_FILE is not");
  });
});
