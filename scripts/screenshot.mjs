// Saves docs/dashboard.png: the dashboard after a few minutes of realistic traffic. Run it with
// `npm run screenshot` (it builds first); it takes about 3 minutes, most of it filling the charts.
import { mkdirSync } from "node:fs";
import { buildApp } from "../dist/app.js";
import { DEFAULT_CONFIG } from "../dist/config.js";
import { launchChromium } from "./chromium.mjs";

const TRAFFIC_S = 150;
const OUT = "docs/dashboard.png";

const app = await buildApp({ ...DEFAULT_CONFIG, logLevel: "silent", port: 0 });
await app.listen({ host: "127.0.0.1", port: 0 });
const url = `http://127.0.0.1:${app.server.address().port}`;

// Other clients, so the topics table has something to show.
const abort = new AbortController();
for (const [topic, n] of [
  ["orders", 3],
  ["news", 2],
  ["user:7", 1],
  ["metrics/cpu", 2],
  ["*", 1],
]) {
  for (let i = 0; i < n; i++) {
    const res = await fetch(`${url}/events?topic=${encodeURIComponent(topic)}`, { signal: abort.signal });
    res.body.pipeTo(new WritableStream()).catch(() => {});
  }
}

const publish = (body) =>
  fetch(`${url}/events`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });

let n = 0;
const kinds = [
  () => ({
    topic: "orders",
    event: "created",
    data: { order: 1000 + n, total: Math.round(Math.random() * 20000) / 100, currency: "EUR" },
  }),
  () => ({ topic: "orders", event: "shipped", data: { order: 990 + n, carrier: "ups", eta: "2026-11-24" } }),
  () => ({ topic: "news", event: "update", data: { headline: `Release ${n % 9}.${n % 4} is out`, tags: ["release"] } }),
  () => ({ topic: "user:7", data: `Hello again, reader ${n}` }),
  () => ({ topic: "metrics/cpu", event: "sample", data: { host: "web-1", cpu: Math.round(Math.random() * 100) } }),
];

const { context, close } = await launchChromium({ viewport: { width: 1280, height: 1180 } });
const page = await context.newPage();
await page.goto(`${url}/`);
await page.locator("#state", { hasText: /^open$/ }).waitFor();

// A wave of traffic: a few to a few dozen events a second.
const started = Date.now();
while (Date.now() - started < TRAFFIC_S * 1000) {
  const t = (Date.now() - started) / 1000;
  const perSecond = Math.round(12 + 10 * Math.sin(t / 7) + 6 * Math.sin(t / 2.3));
  for (let i = 0; i < perSecond; i++) await publish(kinds[n++ % kinds.length]());
  await new Promise((resolve) => setTimeout(resolve, 1000 - ((Date.now() - started) % 1000)));
}
await publish({
  topic: "orders",
  event: "invoice",
  data: { order: 1042, lines: Array.from({ length: 12 }, (_, i) => ({ sku: `SKU-${i}`, qty: i + 1, price: 9.5 })) },
});

await page.fill("#pub-topic", "orders");
await page.fill("#pub-event", "shipped");
await page.check("input[name=format][value=json]");
await page.fill("#pub-data", '{"order": 1042, "carrier": "ups"}');
await page.click("#publish button[type=submit]");
await page.locator("#publish-result", { hasText: /^Published/ }).waitFor();
await page.locator("#clock-seq", { hasText: /tick/ }).waitFor();

mkdirSync("docs", { recursive: true });
await page.screenshot({ path: OUT });
console.log(`saved ${OUT}`);

abort.abort();
await close();
await app.close();
