import { exportSPKI, generateKeyPair, type JWTPayload, SignJWT, UnsecuredJWT } from "jose";

/** An HS256 secret long enough for Herald (32 bytes or more). */
export const SECRET = "herald-test-secret-of-at-least-32-bytes";

/** What a test token says: Mercure claims, plus `exp` in seconds from now (negative: already expired). */
export interface TokenSpec {
  publish?: string[];
  subscribe?: string[];
  sub?: string;
  expiresInS?: number;
  /** Seconds from now before which the token is not valid. */
  notBeforeS?: number;
}

function claims(spec: TokenSpec): JWTPayload {
  const now = Math.floor(Date.now() / 1000);
  return {
    mercure: { publish: spec.publish ?? [], subscribe: spec.subscribe ?? [] },
    ...(spec.sub !== undefined && { sub: spec.sub }),
    ...(spec.expiresInS !== undefined && { exp: now + spec.expiresInS }),
    ...(spec.notBeforeS !== undefined && { nbf: now + spec.notBeforeS }),
  };
}

/** Signs an HS256 token with `secret`. */
export function hs256(spec: TokenSpec, secret = SECRET): Promise<string> {
  return new SignJWT(claims(spec)).setProtectedHeader({ alg: "HS256" }).sign(new TextEncoder().encode(secret));
}

/** An unsigned (`alg: none`) token. */
export function unsigned(spec: TokenSpec): string {
  return new UnsecuredJWT(claims(spec)).encode();
}

/** A fresh asymmetric key pair: the PEM public key to configure, and a signer. */
export interface Signer {
  alg: "RS256" | "ES256";
  publicPem: string;
  sign(spec: TokenSpec): Promise<string>;
}

/** Generates an RS256 or ES256 key pair with jose. */
export async function keyPair(alg: "RS256" | "ES256"): Promise<Signer> {
  const { publicKey, privateKey } = await generateKeyPair(alg);
  return {
    alg,
    publicPem: await exportSPKI(publicKey),
    sign: (spec) => new SignJWT(claims(spec)).setProtectedHeader({ alg }).sign(privateKey),
  };
}

/** The `exp` claim of `token`, in seconds since the epoch (read, not verified). */
export function expOf(token: string): number {
  const payload = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString()) as JWTPayload;
  if (payload.exp === undefined) throw new Error("the token has no exp");
  return payload.exp;
}
