import cookie from "@fastify/cookie";
import type { FastifyInstance } from "fastify";
import { request } from "undici";
import { buildApp } from "../../src/app.js";
import { JwtVerifier, parseJwtKey } from "../../src/auth/jwt-verifier.js";
import type { Broker, EventInput } from "../../src/broker/broker.js";
import { DEFAULT_CONFIG } from "../../src/config.js";
import { newestEventId, PresenceRegistry, type PresenceStore } from "../../src/mercure/presence.js";
import { subscriptionsRoutes } from "../../src/mercure/subscriptions-routes.js";
import type { Envelope } from "../../src/sse/envelope.js";
import { silentLogger } from "./server.js";
import { type OpenStream, openStream } from "./stream.js";
import { hs256, SECRET } from "./tokens.js";

/** A Herald app with the subscriptions API registered beside its routes, as the lead will wire it. */
export interface PresenceApp {
  app: FastifyInstance;
  url: string;
  presence: PresenceRegistry;
  broker: Broker;
  /** Every update the registry published, in order. */
  published: EventInput[];
  close(): Promise<void>;
}

/**
 * Builds Herald on `broker` (closed with the app) with `SUBSCRIBER_JWT_KEY` set (and `SUBSCRIPTIONS`
 * off, so an app that wires presence itself does not register the routes twice), a presence
 * registry publishing through the broker (so the hub streams its updates), and the subscriptions
 * routes; listens on 127.0.0.1, port 0. `lastEventID` is the newest event in the broker.
 */
export async function startPresenceApp(broker: Broker, store?: PresenceStore): Promise<PresenceApp> {
  const app = await buildApp(
    {
      ...DEFAULT_CONFIG,
      logLevel: "silent",
      subscriberJwtKey: SECRET,
      host: "127.0.0.1",
      port: 0,
    },
    { broker },
  );
  const published: EventInput[] = [];
  const presence = new PresenceRegistry({
    publish: (input) => {
      published.push(input);
      return broker.publish(input);
    },
    log: silentLogger,
    ...(store !== undefined && { store }),
  });
  await presence.start();
  // In a context of its own with the cookie parser, as Herald's plugin registers them.
  await app.register(async (routes) => {
    await routes.register(cookie, { hook: false });
    await routes.register(subscriptionsRoutes, {
      presence,
      subscriber: new JwtVerifier(parseJwtKey(SECRET), { keyName: "SUBSCRIBER_JWT_KEY", role: "subscribe" }),
      lastEventId: newestEventId(broker),
    });
  });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const address = app.server.address();
  if (address === null || typeof address === "string") throw new Error("no TCP address");
  return {
    app,
    url: `http://127.0.0.1:${address.port}`,
    presence,
    broker,
    published,
    async close() {
      await presence.close();
      await app.close();
    },
  };
}

/** `GET url` with a token whose `mercure.subscribe` is `subscribe` (`null`: no token); the parsed answer. */
export async function getSubscriptions(
  url: string,
  subscribe: string[] | null = ["*"],
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string; json: unknown }> {
  const auth = subscribe === null ? {} : { authorization: `Bearer ${await hs256({ subscribe })}` };
  const res = await request(url, { headers: { ...auth, ...headers } });
  const body = await res.body.text();
  return { status: res.statusCode, headers: res.headers, body, json: body === "" ? undefined : JSON.parse(body) };
}

/** An `/events?topic=*&envelope=1` stream whose token receives every private update. */
export async function watchEverything(url: string, headers: Record<string, string> = {}): Promise<OpenStream> {
  const token = await hs256({ subscribe: ["*"] });
  const stream = await openStream(`${url}/events?topic=*&envelope=1`, { authorization: `Bearer ${token}`, ...headers });
  await stream.until("the stream to open", (s) => s.retry !== undefined);
  return stream;
}

/** The subscription updates a `watchEverything` stream received: topic and parsed document. */
export function subscriptionUpdates(
  stream: OpenStream,
): { id: string; topic: string; document: Record<string, unknown> }[] {
  return stream.events
    .map((e) => ({ id: e.lastEventId, envelope: JSON.parse(e.data) as Envelope }))
    .filter(({ envelope }) => envelope.topic.startsWith("/.well-known/mercure/subscriptions/"))
    .map(({ id, envelope }) => ({
      id,
      topic: envelope.topic,
      document: JSON.parse(envelope.data) as Record<string, unknown>,
    }));
}
