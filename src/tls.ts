import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { createSecureContext, Server as TlsServer } from "node:tls";
import { type Config, ConfigError } from "./config.js";

/** A certificate and its private key, PEM, as read from `TLS_CERT_FILE` and `TLS_KEY_FILE`. */
export interface TlsFiles {
  cert: Buffer;
  key: Buffer;
}

/** What Herald logs about the certificate it serves, at start-up and on every reload. */
export interface CertificateSummary {
  subject: string;
  serialNumber: string;
  fingerprint256: string;
  validTo: string;
}

function readPem(name: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new ConfigError(
      `${name}=${JSON.stringify(path)} cannot be read (${reason}): give the path of a PEM file Herald may read`,
      {
        cause: err,
      },
    );
  }
}

/**
 * Reads the certificate and key that `config` names and checks that they are PEM and belong
 * together. `undefined` when TLS is not configured. Throws a `ConfigError` naming the variable and
 * the path, so a bad pair stops start-up (or is refused by a reload) instead of failing handshakes.
 */
export function readTlsFiles(config: Pick<Config, "tlsCertFile" | "tlsKeyFile">): TlsFiles | undefined {
  const { tlsCertFile, tlsKeyFile } = config;
  if (tlsCertFile === undefined || tlsKeyFile === undefined) return undefined;
  const cert = readPem("TLS_CERT_FILE", tlsCertFile);
  const key = readPem("TLS_KEY_FILE", tlsKeyFile);
  try {
    new X509Certificate(cert);
  } catch (err) {
    throw new ConfigError(
      `TLS_CERT_FILE=${JSON.stringify(tlsCertFile)} is not a PEM certificate (${(err as Error).message}): give the file that starts with -----BEGIN CERTIFICATE-----`,
      { cause: err },
    );
  }
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new ConfigError(
      `TLS_KEY_FILE=${JSON.stringify(tlsKeyFile)} cannot serve TLS_CERT_FILE=${JSON.stringify(tlsCertFile)} (${(err as Error).message}): give the PEM private key of that certificate, unencrypted`,
      { cause: err },
    );
  }
  return { cert, key };
}

/** Subject, serial, SHA-256 fingerprint and expiry of the first certificate in `cert`. */
export function summarizeCertificate(cert: Buffer): CertificateSummary {
  const x509 = new X509Certificate(cert);
  return {
    subject: x509.subject,
    serialNumber: x509.serialNumber,
    fingerprint256: x509.fingerprint256,
    validTo: x509.validTo,
  };
}

/**
 * Fastify server options for `files`: with them, HTTPS on one port, HTTP/2 chosen by ALPN and
 * HTTP/1.1 for clients that do not offer it; without them, none (plain HTTP/1.1). Typed `object`
 * on purpose: Fastify's types would make the whole app an HTTP/2 app from `http2: true`, while
 * Herald's code uses only what the HTTP/1.1 and HTTP/2 requests and replies share (the stream
 * writers, `src/sse/`, tell the two apart at run time).
 */
export function tlsServerOptions(files: TlsFiles | undefined): object {
  if (files === undefined) return {};
  return { http2: true, https: { allowHTTP1: true, cert: files.cert, key: files.key } };
}

/**
 * Re-reads the certificate and key and serves them to every new connection; open connections
 * (and their streams) keep the certificate they were set up with. On a bad pair it throws a
 * `ConfigError` and the server goes on serving the old certificate.
 */
export function reloadCertificate(
  server: unknown,
  config: Pick<Config, "tlsCertFile" | "tlsKeyFile">,
): CertificateSummary {
  if (!(server instanceof TlsServer))
    throw new ConfigError("TLS_CERT_FILE is not set: there is no certificate to reload");
  const files = readTlsFiles(config) as TlsFiles;
  server.setSecureContext({ cert: files.cert, key: files.key });
  return summarizeCertificate(files.cert);
}

/**
 * Reloads the certificate on every `SIGHUP` (what `systemctl reload`, certbot's deploy hook or
 * `kill -HUP` send once both renewed files are in place), logging what is served now, or why the
 * new files were refused and the old certificate kept.
 */
export function reloadCertificateOnSighup(
  app: { server: unknown; log: { info(obj: object, msg: string): void; error(obj: object, msg: string): void } },
  config: Pick<Config, "tlsCertFile" | "tlsKeyFile">,
): void {
  process.on("SIGHUP", () => {
    try {
      const certificate = reloadCertificate(app.server, config);
      app.log.info({ certificate }, "SIGHUP: reloaded the TLS certificate; new connections get it");
    } catch (err) {
      app.log.error({ err }, "SIGHUP: kept the TLS certificate served so far");
    }
  });
}
