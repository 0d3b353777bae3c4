// A shop's own Fastify app with Herald inside it: orders are created by the app's own route, and
// browsers follow them live at /live/events?topic=orders. Run `npm run build` at the project root
// first, then `node examples/embed-fastify/server.mjs`.
import Fastify from "fastify";
import herald from "herald";

/** Builds the example app; `listen` is left to the caller. */
export async function buildShop({ logger = true } = {}) {
  const app = Fastify({ logger });

  // The app's own API takes text/plain notes; Herald's routes keep their own parsers.
  app.addContentTypeParser("text/plain", { parseAs: "string" }, (_request, body, done) => done(null, body));

  await app.register(herald, { prefix: "/live", historySize: 1_000 });

  let nextOrder = 1;
  app.post("/orders", async (request, reply) => {
    const order = { number: nextOrder++, note: String(request.body ?? "") };
    // In process: no HTTP round trip, no token; subscribers on every node get it.
    const published = await app.herald.publish({ topic: "orders", event: "order", data: order });
    reply.code(201);
    return { order, eventId: published.id };
  });
  return app;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const app = await buildShop();
  await app.listen({ port: Number(process.env.PORT ?? 3000), host: "127.0.0.1" });
}
