import { Pool, request } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import { boundTopicLabels, MAX_TOPIC_LABELS, OTHER_TOPICS_LABEL } from "../../src/routes/metrics.js";
import { startServer, type TestServer } from "../helpers/server.js";
import { type OpenStream, openStream } from "../helpers/stream.js";
import { hs256, SECRET } from "../helpers/tokens.js";

const servers: TestServer[] = [];
const streams: OpenStream[] = [];
afterEach(async () => {
  for (const s of streams.splice(0)) s.close();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function start() {
  const server = await startServer();
  servers.push(server);
  return server;
}

async function subscribe(url: string, headers: Record<string, string> = {}) {
  const stream = await openStream(url, headers);
  streams.push(stream);
  await stream.until("the stream to open", (s) => s.retry !== undefined);
  return stream;
}

async function scrape(server: TestServer) {
  const res = await request(`${server.url}/metrics`);
  const text = await res.body.text();
  return { res, text };
}

/** The value of one series in Prometheus text, e.g. `herald_topic_subscribers{topic="news"}`. */
function value(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("GET /metrics", () => {
  it("answers Prometheus text with Herald's metrics and the default process metrics", async () => {
    const server = await start();
    const { res, text } = await scrape(server);
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toBe("text/plain; version=0.0.4; charset=utf-8");
    for (const name of [
      "herald_open_streams gauge",
      "herald_topic_subscribers gauge",
      "herald_events_published_total counter",
      "herald_events_delivered_total counter",
      "herald_streams_closed_too_slow_total counter",
      "herald_replays_total counter",
      "herald_resets_total counter",
      "herald_publish_duration_seconds histogram",
      "process_cpu_seconds_total counter",
      "process_resident_memory_bytes gauge",
      "nodejs_eventloop_lag_seconds gauge",
      "nodejs_heap_size_used_bytes gauge",
    ]) {
      expect(text).toContain(`# TYPE ${name}\n`);
    }
  });

  it("moves with publishes, deliveries, replays and resets, and times each publish by status", async () => {
    const server = await start();
    await subscribe(`${server.url}/events?topic=news`);
    await subscribe(`${server.url}/events?topic=*`);
    const first = await server.publish({ topic: "news", data: "1" });
    await server.publish({ topic: "news", data: "2" });
    const bad = await request(`${server.url}/events`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ topic: "no\nnewlines", data: "x" }),
    });
    expect(bad.statusCode).toBe(400);
    await bad.body.dump();
    const replay = await subscribe(`${server.url}/events?topic=news`, { "last-event-id": first.id });
    await replay.take(1);
    await subscribe(`${server.url}/events?topic=news`, { "last-event-id": "unknown" });

    const { text } = await scrape(server);
    expect(value(text, "herald_open_streams")).toBe(4);
    expect(value(text, 'herald_topic_subscribers{topic="news"}')).toBe(3);
    expect(value(text, 'herald_topic_subscribers{topic="*"}')).toBe(1);
    expect(value(text, "herald_events_published_total")).toBe(2);
    expect(value(text, "herald_events_delivered_total")).toBe(5);
    expect(value(text, "herald_replays_total")).toBe(1);
    expect(value(text, "herald_resets_total")).toBe(1);
    expect(value(text, "herald_streams_closed_too_slow_total")).toBe(0);
    expect(value(text, 'herald_publish_duration_seconds_count{status="201"}')).toBe(2);
    expect(value(text, 'herald_publish_duration_seconds_count{status="400"}')).toBe(1);
    expect(value(text, 'herald_publish_duration_seconds_sum{status="201"}')).toBeGreaterThan(0);
    // Only POST /events is timed.
    expect(text).not.toMatch(/herald_publish_duration_seconds_count\{status="200"\}/);
  });

  it("times every publish between two scrapes, however many there are", async () => {
    const server = await start();
    // More than Herald holds before it observes them (1,024), with one scrape before and one after.
    const publishes = 1_500;
    await scrape(server);
    const pool = new Pool(server.url, { connections: 16 });
    try {
      await Promise.all(
        Array.from({ length: publishes }, async (_, i) => {
          const res = await pool.request({
            method: "POST",
            path: "/events",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ topic: "many", data: String(i) }),
          });
          await res.body.dump();
          expect(res.statusCode).toBe(201);
        }),
      );
    } finally {
      await pool.close();
    }
    const { text } = await scrape(server);
    expect(value(text, 'herald_publish_duration_seconds_count{status="201"}')).toBe(publishes);
    expect(value(text, 'herald_publish_duration_seconds_bucket{le="+Inf",status="201"}')).toBe(publishes);
  });

  it("keeps the topic label set bounded: the busiest topics, and the rest summed", async () => {
    const server = await start();
    const topics = MAX_TOPIC_LABELS + 4;
    for (let i = 0; i < topics; i++) await subscribe(`${server.url}/events?topic=t${i}`);
    await subscribe(`${server.url}/events?topic=t7`);
    const { text } = await scrape(server);
    const series = text.split("\n").filter((l) => l.startsWith("herald_topic_subscribers{"));
    expect(series).toHaveLength(MAX_TOPIC_LABELS + 1);
    expect(value(text, 'herald_topic_subscribers{topic="t7"}')).toBe(2);
    expect(value(text, `herald_topic_subscribers{topic="${OTHER_TOPICS_LABEL}"}`)).toBe(topics - MAX_TOPIC_LABELS);
    const total = series.reduce((sum, l) => sum + Number(l.split(" ")[1]), 0);
    expect(total).toBe(topics + 1);
  });

  it("with SUBSCRIBER_JWT_KEY set, needs the token /stats needs, since topic labels name topics", async () => {
    const server = await startServer({ subscriberJwtKey: SECRET });
    servers.push(server);
    const none = await request(`${server.url}/metrics`);
    expect(none.statusCode).toBe(401);
    expect(await none.body.json()).toMatchObject({ code: "HERALD_TOKEN_MISSING" });
    const token = await hs256({ subscribe: ["*"] });
    // Prometheus sends it as a bearer token (scrape_config authorization: credentials).
    const ok = await request(`${server.url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
    expect(ok.statusCode).toBe(200);
    expect(await ok.body.text()).toContain("herald_open_streams 0");
  });

  it("belongs to each app: two apps in one process count their own events", async () => {
    const a = await start();
    const b = await start();
    await a.publish({ data: "only on a" });
    expect(value((await scrape(a)).text, "herald_events_published_total")).toBe(1);
    expect(value((await scrape(b)).text, "herald_events_published_total")).toBe(0);
  });
});

describe("boundTopicLabels", () => {
  it("keeps the busiest topics and sums the rest, a real _other topic included", () => {
    const counts = { a: 5, b: 1, c: 3, d: 2, [OTHER_TOPICS_LABEL]: 4 };
    expect(Object.fromEntries(boundTopicLabels(counts, 2))).toEqual({ a: 5, [OTHER_TOPICS_LABEL]: 10 });
    expect(Object.fromEntries(boundTopicLabels({ a: 1 }, 2))).toEqual({ a: 1 });
  });
});
