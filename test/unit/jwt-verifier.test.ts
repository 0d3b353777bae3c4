import { afterEach, describe, expect, it, vi } from "vitest";
import { JwtVerifier, parseJwtKey } from "../../src/auth/jwt-verifier.js";
import { hs256, SECRET } from "../helpers/tokens.js";

describe("JwtVerifier", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("reads the claim list of its role, sub and exp", async () => {
    const verifier = new JwtVerifier(parseJwtKey(SECRET), { keyName: "K", role: "subscribe" });
    const claims = await verifier.verify(await hs256({ publish: ["p"], subscribe: ["s"], sub: "me", expiresInS: 60 }));
    expect(claims.grant.covers("s")).toBe(true);
    expect(claims.grant.covers("p")).toBe(false);
    expect(claims.subject).toBe("me");
    expect(claims.expiresAt).toBeGreaterThan(Date.now() / 1000);
  });

  it("does not serve a token from its cache once the token has expired", async () => {
    vi.useFakeTimers({ now: new Date("2030-01-01T00:00:00Z"), toFake: ["Date"] });
    const verifier = new JwtVerifier(parseJwtKey(SECRET), { keyName: "K", role: "publish" });
    const token = await hs256({ publish: ["*"], expiresInS: 10 });
    expect((await verifier.verify(token)).grant.all).toBe(true);
    expect((await verifier.verify(token)).grant.all).toBe(true);
    vi.setSystemTime(new Date("2030-01-01T00:00:10Z"));
    await expect(verifier.verify(token)).rejects.toMatchObject({ code: "HERALD_TOKEN_EXPIRED" });
  });

  it("treats a missing or malformed mercure claim as covering nothing", async () => {
    const verifier = new JwtVerifier(parseJwtKey(SECRET), { keyName: "K", role: "publish" });
    const { SignJWT } = await import("jose");
    const key = new TextEncoder().encode(SECRET);
    for (const payload of [{}, { mercure: "all" }, { mercure: { publish: "*" } }, { mercure: null }]) {
      const token = await new SignJWT(payload).setProtectedHeader({ alg: "HS256" }).sign(key);
      expect((await verifier.verify(token)).grant.covers("news"), JSON.stringify(payload)).toBe(false);
    }
  });
});
