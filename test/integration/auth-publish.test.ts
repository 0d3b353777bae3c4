import type { FastifyInstance } from "fastify";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../../src/app.js";
import { type Config, DEFAULT_CONFIG } from "../../src/config.js";
import { injectPublish } from "../helpers/inject.js";
import { hs256, keyPair, SECRET, type Signer, type TokenSpec, unsigned } from "../helpers/tokens.js";

const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

async function app(overrides: Partial<Config>): Promise<FastifyInstance> {
  const built = await buildApp({ ...DEFAULT_CONFIG, logLevel: "silent", ...overrides });
  apps.push(built);
  return built;
}

function publish(target: FastifyInstance, body: Record<string, unknown>, authorization?: string) {
  return injectPublish(target, body, { headers: authorization === undefined ? {} : { authorization } });
}

const FORM = { type: "application/x-www-form-urlencoded" };

let es256: Signer;
let rs256: Signer;
beforeAll(async () => {
  [es256, rs256] = await Promise.all([keyPair("ES256"), keyPair("RS256")]);
});

const keys: { name: string; key: () => string; sign: (spec: TokenSpec) => Promise<string> }[] = [
  { name: "HS256", key: () => SECRET, sign: (spec) => hs256(spec) },
  { name: "ES256", key: () => es256.publicPem, sign: (spec) => es256.sign(spec) },
  { name: "RS256", key: () => rs256.publicPem, sign: (spec) => rs256.sign(spec) },
];

describe.each(keys)("POST /events with an $name PUBLISHER_JWT_KEY", ({ name, key, sign }) => {
  it("accepts a token whose mercure.publish covers the topic: exact, *, {id} and {+rest}", async () => {
    const target = await app({ publisherJwtKey: key() });
    const cases: [string[], string][] = [
      [["news"], "news"],
      [["*"], "anything/at/all"],
      [["orders/{id}"], "orders/42"],
      [["users/{+rest}"], "users/7/inbox"],
    ];
    for (const [publish, topic] of cases) {
      const res = await publishWith(target, topic, await sign({ publish, expiresInS: 60 }));
      expect(res.statusCode, `${publish} → ${topic}`).toBe(201);
    }
  });

  it("answers 403 for a valid token that does not cover the topic, naming the claim and topic", async () => {
    const target = await app({ publisherJwtKey: key() });
    const cases: [string[], string][] = [
      [["news"], "sport"],
      [["orders/{id}"], "orders/42/items"],
      [[], "news"],
    ];
    for (const [publish, topic] of cases) {
      const res = await publishWith(target, topic, await sign({ publish, subscribe: ["*"] }));
      expect(res.statusCode, `${publish} → ${topic}`).toBe(403);
      expect(res.json()).toMatchObject({
        code: "HERALD_TOPIC_FORBIDDEN",
        message: expect.stringContaining(`mercure.publish claim does not cover the topic "${topic}"`),
      });
    }
  });

  it("answers 401 saying which: missing, not Bearer, malformed, unsigned, expired, not yet valid", async () => {
    const target = await app({ publisherJwtKey: key() });
    const cases: [string | undefined, string, RegExp][] = [
      [undefined, "HERALD_TOKEN_MISSING", /Publishing .* needs a token: send Authorization: Bearer <JWT>/],
      ["Basic dXNlcjpwYXNz", "HERALD_TOKEN_INVALID", /must be Bearer <JWT>/],
      ["Bearer not-a-jwt", "HERALD_TOKEN_INVALID", /not a JWT/],
      ["Bearer a.b.c", "HERALD_TOKEN_INVALID", /not a JWT/],
      [`Bearer ${unsigned({ publish: ["*"] })}`, "HERALD_TOKEN_INVALID", /unsigned \(alg none\)/],
      [`Bearer ${await sign({ publish: ["*"], expiresInS: -10 })}`, "HERALD_TOKEN_EXPIRED", /expired at \d{4}-/],
      [`Bearer ${await sign({ publish: ["*"], notBeforeS: 600 })}`, "HERALD_TOKEN_INVALID", /"nbf" claim/],
    ];
    for (const [authorization, code, message] of cases) {
      const res = await publish(target, { topic: "news", data: 1 }, authorization);
      expect(res.statusCode, authorization).toBe(401);
      expect(res.headers["www-authenticate"]).toBe('Bearer realm="herald"');
      expect(res.json()).toMatchObject({ code });
      expect(res.json().message).toMatch(message);
    }
  });

  it("answers 401 for a token signed with another key of the same algorithm", async () => {
    const target = await app({ publisherJwtKey: key() });
    const other =
      name === "HS256"
        ? await hs256({ publish: ["*"] }, "another-secret-that-is-32-bytes-long")
        : await (await keyPair(name as "ES256" | "RS256")).sign({ publish: ["*"] });
    const res = await publishWith(target, "news", other);
    expect(res.statusCode).toBe(401);
    expect(res.json()).toMatchObject({
      code: "HERALD_TOKEN_INVALID",
      message: expect.stringContaining("signature does not match PUBLISHER_JWT_KEY"),
    });
  });
});

describe("algorithm confusion", () => {
  it.each(["ES256", "RS256"] as const)(
    "refuses an HS256 token signed with the %s public key's own text",
    async (alg) => {
      const signer = alg === "ES256" ? es256 : rs256;
      const target = await app({ publisherJwtKey: signer.publicPem });
      const forged = await hs256({ publish: ["*"] }, signer.publicPem);
      const res = await publishWith(target, "news", forged);
      expect(res.statusCode).toBe(401);
      expect(res.json()).toMatchObject({
        code: "HERALD_TOKEN_INVALID",
        message: expect.stringContaining(`signed with HS256, but PUBLISHER_JWT_KEY verifies only ${alg}`),
      });
    },
  );

  it("refuses an ES256 token when the key is an HS256 secret", async () => {
    const target = await app({ publisherJwtKey: SECRET });
    const res = await publishWith(target, "news", await es256.sign({ publish: ["*"] }));
    expect(res.statusCode).toBe(401);
    expect(res.json().message).toContain("signed with ES256, but PUBLISHER_JWT_KEY verifies only HS256");
  });
});

describe("publishing without PUBLISHER_JWT_KEY", () => {
  it("is open: no token needed, and a token sent anyway is not checked", async () => {
    const target = await app({});
    expect((await publish(target, { data: 1 })).statusCode).toBe(201);
    expect((await publish(target, { data: 1 }, "Bearer whatever")).statusCode).toBe(201);
  });
});

describe("private events at publish time", () => {
  it("are refused with a 400 when SUBSCRIBER_JWT_KEY is not set, as JSON and as a form", async () => {
    const target = await app({});
    const json = await publish(target, { topic: "t", data: 1, private: true });
    expect(json.statusCode).toBe(400);
    expect(json.json()).toMatchObject({
      code: "HERALD_PRIVATE_UNAVAILABLE",
      message: expect.stringContaining("SUBSCRIBER_JWT_KEY is not set"),
    });
    const form = await injectPublish(target, "topic=t&data=1&private=true", FORM);
    expect(form.statusCode).toBe(400);
    expect(form.json().code).toBe("HERALD_PRIVATE_UNAVAILABLE");
    expect((await publish(target, { topic: "t", data: 1, private: false })).statusCode).toBe(201);
  });

  it("are accepted with SUBSCRIBER_JWT_KEY; private must be a boolean; a private re-publish must match", async () => {
    const target = await app({ subscriberJwtKey: SECRET });
    const first = await publish(target, { topic: "t", data: 1, id: "p-1", private: true });
    expect(first.statusCode).toBe(201);
    expect(first.json()).toMatchObject({ id: "p-1", private: true });
    const form = await injectPublish(target, "topic=t&data=1&private=true", FORM);
    expect(form.json()).toMatchObject({ private: true });
    const wrong = await publish(target, { topic: "t", data: 1, private: "yes" });
    expect(wrong.statusCode).toBe(400);
    expect(wrong.json()).toMatchObject({ code: "HERALD_INVALID_EVENT", message: "private must be true or false" });
    const conflict = await publish(target, { topic: "t", data: 1, id: "p-1" });
    expect(conflict.statusCode).toBe(409);
  });
});

function publishWith(target: FastifyInstance, topic: string, token: string) {
  return publish(target, { topic, data: "x" }, `Bearer ${token}`);
}
