/**
 * The baseline a Node user could write in an afternoon: a `node:http` broadcaster with no
 * framework, that encodes each event once and writes it to every subscriber at once (one write
 * per event per subscriber, no coalescing, no bound on slow clients). Bench API: `GET
 * /events?topic=t` streams a topic; `POST /events` with JSON `{"topic","data"}` publishes.
 */
import { createServer, type ServerResponse } from "node:http";

const subscribers = new Map<string, Set<ServerResponse>>();
let lastId = 0;

function subscribe(topic: string, res: ServerResponse): void {
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
    connection: "keep-alive",
  });
  res.write("retry: 3000\n\n");
  let subs = subscribers.get(topic);
  if (subs === undefined) {
    subs = new Set();
    subscribers.set(topic, subs);
  }
  subs.add(res);
  res.on("close", () => subs.delete(res));
}

function publish(body: string, res: ServerResponse): void {
  let event: { topic?: string; data?: unknown };
  try {
    event = JSON.parse(body);
  } catch {
    res.writeHead(400).end();
    return;
  }
  const id = ++lastId;
  const data = typeof event.data === "string" ? event.data : JSON.stringify(event.data);
  const bytes = Buffer.from(`id: ${id}\ndata: ${data.split(/\r\n|\r|\n/).join("\ndata: ")}\n\n`);
  for (const sub of subscribers.get(event.topic ?? "default") ?? []) sub.write(bytes);
  const answer = JSON.stringify({ id: String(id) });
  res.writeHead(201, { "content-type": "application/json", "content-length": Buffer.byteLength(answer) });
  res.end(answer);
}

const server = createServer((req, res) => {
  const url = new URL(req.url ?? "/", "http://localhost");
  if (url.pathname === "/events" && req.method === "GET") {
    subscribe(url.searchParams.get("topic") ?? "default", res);
  } else if (url.pathname === "/events" && req.method === "POST") {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => {
      body += chunk;
    });
    req.on("end", () => publish(body, res));
  } else {
    res.writeHead(404).end();
  }
});
// Fastify's default: Node's 5 s would close the publisher's idle keep-alive connections mid-run.
server.keepAliveTimeout = 72_000;
server.listen(Number(process.env.PORT ?? 3000), process.env.HOST ?? "127.0.0.1");
