// How the dashboard holds up under a flood: EVENTS events (100,000 by default) into one open page
// on `*`, as fast as the page takes them. Measures the page, not publishing: events go straight
// into the broker, then through the real hub and stream to Chromium. Prints a Markdown table.
// Run with `npm run bench:dashboard` (it builds first). Bounded: EVENTS events, DEADLINE_MS.
import { cpus, loadavg } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { buildApp } from "../dist/app.js";
import { MemoryBroker } from "../dist/broker/memory-broker.js";
import { DEFAULT_CONFIG } from "../dist/config.js";
import { launchChromium } from "../scripts/chromium.mjs";

const EVENTS = Number(process.env.EVENTS ?? 100_000);
const BATCH = 250;
/** Published but not yet shown by the page: keeps the stream under its slow-client bound. */
const MAX_IN_FLIGHT = 3_000;
const DEADLINE_MS = 300_000;
/** Interactions (Pause, Resume, typing a filter, clearing it) measured this often during the flood. */
const PROBE_EVERY = 10_000;

const broker = new MemoryBroker({ historySize: 10_000 });
const app = await buildApp({ ...DEFAULT_CONFIG, logLevel: "silent", port: 0 }, { broker });
await app.listen({ host: "127.0.0.1", port: 0 });
const url = `http://127.0.0.1:${app.server.address().port}`;

const { context, close } = await launchChromium();
const page = await context.newPage();
const cdp = await context.newCDPSession(page);
await cdp.send("Performance.enable");
await page.goto(`${url}/`);
await page.locator("#state", { hasText: /^open$/ }).waitFor();

async function pageMetrics() {
  await cdp.send("HeapProfiler.collectGarbage");
  const { metrics } = await cdp.send("Performance.getMetrics");
  const get = (name) => metrics.find((m) => m.name === name)?.value ?? 0;
  return { nodes: get("Nodes"), heapMiB: get("JSHeapUsedSize") / 1024 / 1024 };
}

/** Interactions in one probe: two clicks and three key presses. */
const PER_PROBE = 5;

/** Real input through the browser, timed by the Event Timing API (input to next paint). */
async function interact() {
  await page.click("#pause");
  await page.click("#pause");
  await page.locator("#filter").pressSequentially("upd");
  await page.locator("#filter").fill("");
}

const received = async () => Number(((await page.textContent("#feed-status")) ?? "").split(" ")[0].replace(/\D/g, ""));

const loadBefore = loadavg()[0].toFixed(1);
const before = await pageMetrics();
await page.evaluate(() => {
  const bench = { frames: [], longTasks: [], interactions: [], running: true };
  window.bench = bench;
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) bench.longTasks.push(e.duration);
  }).observe({ type: "longtask" });
  // One figure per interaction (its slowest event: pointerdown, click, keydown...), as INP counts it.
  const byInteraction = new Map();
  bench.interactions = byInteraction;
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      if (e.interactionId)
        byInteraction.set(e.interactionId, Math.max(e.duration, byInteraction.get(e.interactionId) ?? 0));
    }
  }).observe({ type: "event", durationThreshold: 16 });
  let last = performance.now();
  const frame = (t) => {
    bench.frames.push(t - last);
    last = t;
    if (bench.running) requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
});

const topics = ["orders", "news", "user:7", "metrics/cpu"];
const names = [undefined, "created", "shipped", "update", "sample"];
const started = Date.now();
let sent = 0;
let nextProbe = PROBE_EVERY;
let probes = 0;
while (sent < EVENTS && Date.now() - started < DEADLINE_MS) {
  if (sent - (await received()) > MAX_IN_FLIGHT) {
    await sleep(5);
    continue;
  }
  const batch = [];
  for (let i = 0; i < BATCH && sent < EVENTS; i++, sent++) {
    const event = names[sent % names.length];
    batch.push(
      broker.publish({
        topic: topics[sent % topics.length],
        ...(event && { event }),
        data: JSON.stringify({ n: sent, order: 1000 + (sent % 977), total: (sent % 10007) / 100, currency: "EUR" }),
      }),
    );
  }
  await Promise.all(batch);
  if (sent >= nextProbe && sent < EVENTS) {
    nextProbe += PROBE_EVERY;
    probes++;
    await interact();
  }
}
while ((await received()) < sent && Date.now() - started < DEADLINE_MS) await sleep(20);
const floodMs = Date.now() - started;
const during = await page.evaluate(() => {
  window.bench.running = false;
  const b = window.bench;
  const result = { frames: b.frames, longTasks: b.longTasks, interactions: [...b.interactions.values()] };
  b.interactions.clear();
  return result;
});

for (let i = 0; i < 5; i++) await interact();
await sleep(200);
const afterInteractions = await page.evaluate(() => [...window.bench.interactions.values()]);
const after = await pageMetrics();
const rows = await page.locator("#feed li").count();
const shown = await received();
const closedTooSlow = (await (await fetch(`${url}/stats`)).json()).closedTooSlow;

const sorted = (xs) => [...xs].sort((a, b) => a - b);
const pct = (xs, p) => (xs.length === 0 ? 0 : sorted(xs)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]);
const ms = (x) => `${Math.round(x)} ms`;
/** Event Timing reports only interactions of 16 ms or more; the others count as 16 ms here. */
const latency = (reported, made) => {
  const all = [...reported, ...Array(Math.max(0, made - reported.length)).fill(16)];
  return `p75 ${ms(pct(all, 75))}, worst ${ms(Math.max(...all))}`;
};

console.log(`
| measure (${EVENTS.toLocaleString("en")} events) | result |
| --- | --- |
| events shown by the page | ${shown.toLocaleString("en")} in ${(floodMs / 1000).toFixed(1)} s (${Math.round(shown / (floodMs / 1000)).toLocaleString("en")} events/s) |
| frame interval during the flood | median ${ms(pct(during.frames, 50))}, p95 ${ms(pct(during.frames, 95))}, worst ${ms(Math.max(...during.frames))} (${during.frames.length.toLocaleString("en")} frames) |
| long tasks (> 50 ms) during the flood | ${during.longTasks.length}${during.longTasks.length ? `, longest ${ms(Math.max(...during.longTasks))}` : ""} |
| input to next paint, ${probes * PER_PROBE} interactions during the flood | ${latency(during.interactions, probes * PER_PROBE)} |
| input to next paint, ${5 * PER_PROBE} interactions after it | ${latency(afterInteractions, 5 * PER_PROBE)} |
| rows in the list after | ${rows} |
| DOM nodes before → after | ${before.nodes.toLocaleString("en")} → ${after.nodes.toLocaleString("en")} |
| JS heap before → after (after GC) | ${before.heapMiB.toFixed(1)} MiB → ${after.heapMiB.toFixed(1)} MiB |
| streams closed as too slow | ${closedTooSlow} |

Machine: ${cpus()[0]?.model} × ${cpus().length}, load average ${loadBefore} before and ${loadavg()[0].toFixed(1)} after (1 min), Node ${process.version}, Chromium ${context.browser()?.version() ?? "(persistent context)"}.
`);

await close();
await app.close();
