import type { FastifyInstance } from "fastify";

/** `GET /health`: `200 {"status":"ok"}` while the service can take work. */
export async function healthRoutes(app: FastifyInstance): Promise<void> {
  app.get("/health", async () => ({ status: "ok" }));
}
