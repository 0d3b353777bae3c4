import type { FastifyInstance } from "fastify";
import type { Broker } from "../broker/broker.js";

/** Options for the health route. */
export interface HealthRoutesOptions {
  broker: Broker;
}

/** `GET /health`: `200 {"status":"ok"}` while the service can take work, else `503` saying why. */
export async function healthRoutes(app: FastifyInstance, { broker }: HealthRoutesOptions): Promise<void> {
  app.get("/health", async (_request, reply) => {
    const status = broker.status();
    if (status.ok) return { status: "ok" };
    reply.code(503);
    return { status: "unavailable", detail: status.detail };
  });
}
