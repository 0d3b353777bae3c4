import { createPublicKey, type KeyObject } from "node:crypto";
import { decodeProtectedHeader, errors, type JWTPayload, jwtVerify } from "jose";
import { TokenExpiredError, TokenInvalidError } from "../errors.js";
import { TopicGrant } from "./topic-grant.js";

/** RFC 7518 §3.2: an HS256 key must be at least as long as the hash, 256 bits. */
const MIN_SECRET_BYTES = 32;
/** Verified tokens kept so a publisher's repeated token costs one signature check, not one per publish. */
const CACHE_SIZE = 1_024;
/** Selectors one claim list may hold, as in Mercure: more is refused, so a token cannot make every match costly. */
const MAX_CLAIM_SELECTORS = 1_000;
/** Mercure's namespaced claim key; when a token has it, it is read instead of `mercure`. */
export const NAMESPACED_CLAIM = "https://mercure.rocks/";

/** A verification key and the one algorithm it accepts. */
export interface JwtKey {
  readonly alg: "HS256" | "RS256" | "ES256";
  readonly key: Uint8Array | KeyObject;
}

/**
 * Reads `PUBLISHER_JWT_KEY` / `SUBSCRIBER_JWT_KEY`: a PEM public key (detected by `-----BEGIN`;
 * RSA of 2048 bits or more → RS256, EC P-256 → ES256), else an HS256 secret of at least 32 bytes.
 * Each key accepts exactly one algorithm, so an HS256 token "signed" with a public key's text
 * (algorithm confusion) and an unsigned `alg: none` token are refused. Throws an `Error` that says
 * how to fix a bad key.
 */
export function parseJwtKey(raw: string): JwtKey {
  if (!raw.includes("-----BEGIN")) {
    if (Buffer.byteLength(raw) < MIN_SECRET_BYTES) {
      throw new Error(`an HS256 secret must be at least ${MIN_SECRET_BYTES} bytes long (RFC 7518 §3.2)`);
    }
    return { alg: "HS256", key: new TextEncoder().encode(raw) };
  }
  // A PEM set as one line in an environment variable carries its newlines as \n.
  const pem = raw.replaceAll("\\n", "\n");
  if (pem.includes("PRIVATE KEY")) {
    throw new Error("this is a private key: give Herald only the public key (openssl pkey -pubout)");
  }
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    throw new Error(`the PEM could not be read (${(err as Error).message})`, { cause: err });
  }
  const details = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === "rsa" && (details?.modulusLength ?? 0) >= 2048) return { alg: "RS256", key };
  if (key.asymmetricKeyType === "ec" && details?.namedCurve === "prime256v1") return { alg: "ES256", key };
  throw new Error("use an RSA public key of 2048 bits or more (RS256) or an EC P-256 public key (ES256)");
}

/** What a verified token allows, for the role its verifier checks. */
export interface TokenClaims {
  /** The topics its `mercure.publish` or `mercure.subscribe` list covers. */
  readonly grant: TopicGrant;
  /** `sub`, when the token has one. */
  readonly subject: string | undefined;
  /** `exp`, in seconds since the epoch, when the token has one (a token without `exp` never expires). */
  readonly expiresAt: number | undefined;
  /** The claim's `payload`, as the issuer wrote it (Mercure hands it to the subscriptions API). */
  readonly payload: unknown;
  /** The claim list of the role, as written (strings only): the selectors it grants. */
  readonly selectors: readonly string[];
}

/** The Mercure claim of a payload: `https://mercure.rocks/` when present, else `mercure`. */
function mercureClaim(payload: JWTPayload): Record<string, unknown> {
  const claim = payload[NAMESPACED_CLAIM] ?? payload.mercure;
  return typeof claim === "object" && claim !== null ? (claim as Record<string, unknown>) : {};
}

/** Options for `JwtVerifier`. */
export interface JwtVerifierOptions {
  /** The variable the key came from, named in error messages. */
  keyName: string;
  /** Which Mercure claim list this verifier reads. */
  role: "publish" | "subscribe";
}

/**
 * Verifies Mercure-shaped JWTs (`{"mercure": {"publish": [...], "subscribe": [...], "payload": ...}}`,
 * or the same under `https://mercure.rocks/`) with `jose` against one key, and turns the claim list
 * of one role into a `TopicGrant`. `exp` is optional, as in Mercure. Keeps the last `CACHE_SIZE`
 * verified tokens until they expire.
 */
export class JwtVerifier {
  readonly #key: JwtKey;
  readonly #options: JwtVerifierOptions;
  readonly #cache = new Map<string, TokenClaims>();

  constructor(key: JwtKey, options: JwtVerifierOptions) {
    this.#key = key;
    this.#options = options;
  }

  /** Resolves to the token's claims; rejects with `TokenInvalidError` or `TokenExpiredError` saying why. */
  async verify(token: string): Promise<TokenClaims> {
    const cached = this.#cache.get(token);
    if (cached !== undefined && (cached.expiresAt === undefined || cached.expiresAt > Date.now() / 1000)) {
      return cached;
    }
    this.#cache.delete(token);
    const payload = await this.#verifySignature(token);
    const mercure = mercureClaim(payload);
    const list = mercure[this.#options.role];
    if (Array.isArray(list) && list.length > MAX_CLAIM_SELECTORS) {
      throw new TokenInvalidError(
        `its mercure.${this.#options.role} claim lists ${list.length} selectors; at most ${MAX_CLAIM_SELECTORS} are allowed`,
      );
    }
    const claims: TokenClaims = {
      grant: new TopicGrant(list),
      subject: typeof payload.sub === "string" ? payload.sub : undefined,
      expiresAt: payload.exp,
      payload: mercure.payload,
      selectors: Array.isArray(list) ? list.filter((entry): entry is string => typeof entry === "string") : [],
    };
    if (this.#cache.size >= CACHE_SIZE) this.#cache.delete(this.#cache.keys().next().value as string);
    this.#cache.set(token, claims);
    return claims;
  }

  async #verifySignature(token: string): Promise<JWTPayload> {
    const { alg } = this.#key;
    const keyName = this.#options.keyName;
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(token);
    } catch (err) {
      throw new TokenInvalidError("it is not a JWT (three base64url parts separated by dots)", { cause: err });
    }
    // jose would refuse these too; saying so plainly tells the client what it did wrong.
    if (typeof header.alg === "string" && header.alg.toLowerCase() === "none") {
      throw new TokenInvalidError("it is unsigned (alg none), which Herald never accepts");
    }
    if (header.alg !== alg) {
      throw new TokenInvalidError(`it is signed with ${String(header.alg)}, but ${keyName} verifies only ${alg}`);
    }
    try {
      return (await jwtVerify(token, this.#key.key, { algorithms: [alg] })).payload;
    } catch (err) {
      if (err instanceof errors.JWTExpired) {
        const exp = typeof err.payload.exp === "number" ? new Date(err.payload.exp * 1000).toISOString() : "its exp";
        throw new TokenExpiredError(exp, { cause: err });
      }
      if (err instanceof errors.JWSSignatureVerificationFailed) {
        throw new TokenInvalidError(`its signature does not match ${keyName}`, { cause: err });
      }
      if (err instanceof errors.JWTClaimValidationFailed) {
        throw new TokenInvalidError(err.message, { cause: err });
      }
      if (err instanceof errors.JOSEError) {
        throw new TokenInvalidError(`it is not a well-formed JWT (${err.message})`, { cause: err });
      }
      throw err;
    }
  }
}
