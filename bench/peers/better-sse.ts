/**
 * better-sse on Fastify 5, used the way its documentation shows: one session per request, one
 * channel per topic, `channel.broadcast` to publish. Bench API: `GET /events?topic=t` streams a
 * topic; `POST /events` with JSON `{"topic","data"}` publishes.
 */
import { type Channel, createChannel, createSession } from "better-sse";
import Fastify from "fastify";

const app = Fastify();
const channels = new Map<string, Channel>();
let lastId = 0;

function channel(topic: string): Channel {
  let found = channels.get(topic);
  if (found === undefined) {
    found = createChannel();
    channels.set(topic, found);
  }
  return found;
}

app.get<{ Querystring: { topic?: string } }>("/events", async (request, reply) => {
  reply.hijack();
  // Data is sent as published text, as the other servers do, rather than as a JSON string.
  const session = await createSession(request.raw, reply.raw, { serializer: String });
  channel(request.query.topic ?? "default").register(session);
});

app.post<{ Body: { topic?: string; data: unknown } }>("/events", async (request, reply) => {
  const { topic = "default", data } = request.body;
  const id = String(++lastId);
  channels.get(topic)?.broadcast(typeof data === "string" ? data : JSON.stringify(data), "message", { eventId: id });
  reply.code(201);
  return { id };
});

await app.listen({ port: Number(process.env.PORT ?? 3000), host: process.env.HOST ?? "127.0.0.1" });
