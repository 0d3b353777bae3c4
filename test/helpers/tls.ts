import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, renameSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import type { FetchLike } from "eventsource";
import { Agent, type Dispatcher, fetch as undiciFetch } from "undici";

/** A self-signed certificate for 127.0.0.1 and localhost, valid one day, made by `openssl`. */
export interface TestCertificate {
  certFile: string;
  keyFile: string;
  /** The certificate, PEM: trust it as a CA (`ca`, `curl --cacert`). */
  cert: Buffer;
  serialNumber: string;
  fingerprint256: string;
}

/**
 * Makes a fresh EC P-256 key and self-signed certificate in `dir` (a new temporary folder by
 * default), written as `cert.pem` and `key.pem`. Each call gives a new serial number, so a reload
 * can be told from the certificate it replaced. The files are written under temporary names and
 * renamed into place, as a renewal would.
 */
export function createCertificate(dir = mkdtempSync(join(tmpdir(), "herald-tls-"))): TestCertificate {
  const certFile = join(dir, "cert.pem");
  const keyFile = join(dir, "key.pem");
  execFileSync(
    "openssl",
    [
      ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"],
      ...["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
      ...["-keyout", `${keyFile}.new`, "-out", `${certFile}.new`],
    ],
    { stdio: "ignore" },
  );
  renameSync(`${keyFile}.new`, keyFile);
  renameSync(`${certFile}.new`, certFile);
  const cert = readFileSync(certFile);
  const x509 = new X509Certificate(cert);
  return { certFile, keyFile, cert, serialNumber: x509.serialNumber, fingerprint256: x509.fingerprint256 };
}

/** An undici dispatcher that trusts `cert` and speaks HTTP/2 when `h2` (else HTTP/1.1 over TLS). */
export function tlsAgent(cert: Buffer, h2 = true): Agent {
  return new Agent({ allowH2: h2, connect: { ca: cert, ...(h2 ? {} : { ALPNProtocols: ["http/1.1"] }) } });
}

/** What a new TLS connection to `url` is served: the certificate's fingerprint and the protocol ALPN chose. */
export function peerCertificate(url: string, ca: Buffer[]): Promise<{ fingerprint256: string; alpn: string | false }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: hostname, port: Number(port), ca, ALPNProtocols: ["h2", "http/1.1"] }, () => {
      const fingerprint256 = socket.getPeerX509Certificate()?.fingerprint256 ?? "";
      resolve({ fingerprint256, alpn: socket.alpnProtocol ?? false });
      socket.destroy();
    });
    socket.once("error", reject);
  });
}

/** The `fetch` option of the `eventsource` client that sends its requests through `dispatcher` (HTTP/2 with `tlsAgent`). */
export function fetchThrough(dispatcher: Dispatcher): FetchLike {
  return (input, init) => undiciFetch(input, { ...init, dispatcher } as Parameters<typeof undiciFetch>[1]);
}
