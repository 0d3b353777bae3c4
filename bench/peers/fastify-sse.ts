/**
 * @fastify/sse, the official Fastify plugin, used the way its documentation shows: an SSE route
 * kept alive, and a set of `reply.sse` contexts per topic that a publish sends to. The plugin has
 * no broadcast of its own. Bench API: `GET /events?topic=t` streams a topic; `POST /events` with
 * JSON `{"topic","data"}` publishes.
 */
import { fastifySSE, type SSEReplyInterface } from "@fastify/sse";
import Fastify from "fastify";

const app = Fastify();
// Data is sent as published text, as the other servers do, rather than as a JSON string.
await app.register(fastifySSE, { serializer: String });
const subscribers = new Map<string, Set<SSEReplyInterface>>();
let lastId = 0;

app.get<{ Querystring: { topic?: string } }>("/events", { sse: "only" }, async (request, reply) => {
  const topic = request.query.topic ?? "default";
  let subs = subscribers.get(topic);
  if (subs === undefined) {
    subs = new Set();
    subscribers.set(topic, subs);
  }
  const sse = reply.sse;
  sse.keepAlive();
  // Headers go out with the first event otherwise; send them now so the client sees the stream open.
  sse.sendHeaders();
  reply.raw.flushHeaders();
  subs.add(sse);
  sse.onClose(() => subs.delete(sse));
});

app.post<{ Body: { topic?: string; data: unknown } }>("/events", async (request, reply) => {
  const { topic = "default", data } = request.body;
  const id = String(++lastId);
  for (const sse of subscribers.get(topic) ?? []) sse.send({ id, data }).catch(() => {});
  reply.code(201);
  return { id };
});

await app.listen({ port: Number(process.env.PORT ?? 3000), host: process.env.HOST ?? "127.0.0.1" });
