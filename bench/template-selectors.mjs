// What URI-template selectors cost the hub's fan-out: events matched per second by the selector
// index with N distinct templates in use and M subscribers, against exact topics only; and one
// match of a pathological template. In-process (no network): it measures matching, not delivery.
//
//   npm run build && node bench/template-selectors.mjs
import { cpus, loadavg } from "node:os";
import { SelectorIndex } from "../dist/hub/selector-index.js";
import { TopicSelector } from "../dist/hub/topic-selector.js";

const BUDGET_MS = 1_500;

/** Runs `fn` repeatedly for about BUDGET_MS; returns calls per second. */
function rate(fn) {
  for (let i = 0; i < 1_000; i++) fn(i);
  let n = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < BUDGET_MS) {
    for (let i = 0; i < 1_000; i++) fn(n++);
    elapsed = Number(process.hrtime.bigint() - start) / 1e6;
  }
  return (n / elapsed) * 1000;
}

function scenario(templates, subscribers) {
  const index = new SelectorIndex();
  for (let s = 0; s < subscribers; s++) {
    const group = s % Math.max(1, templates);
    const selector = templates === 0 ? `https://example.com/t${group}/1` : `https://example.com/t${group}/{id}`;
    index.add({ visited: 0 }, [selector]);
  }
  let visited = 0;
  const visit = () => {
    visited++;
  };
  const groups = Math.max(1, templates);
  const perSecond = rate((i) => index.forEachMatch([`https://example.com/t${i % groups}/1`], visit));
  return { perSecond, visitedPerEvent: visited > 0 ? subscribers / groups : 0 };
}

const rows = [];
for (const subscribers of [1_000, 10_000]) {
  for (const templates of [0, 10, 100, 1_000]) {
    const { perSecond, visitedPerEvent } = scenario(templates, subscribers);
    rows.push(
      `| ${subscribers.toLocaleString("en")} | ${templates === 0 ? "0 (exact topics)" : templates.toLocaleString("en")} | ${Math.round(visitedPerEvent)} | ${Math.round(perSecond).toLocaleString("en")} | ${(1e9 / perSecond / Math.max(1, templates)).toFixed(0)} |`,
    );
  }
}

const nasty = new TopicSelector("{+a}{+b}{+c}{+d}{+e}{+f}x");
const long = `${"a/".repeat(511)}x`;
const nastyPerSecond = rate(() => nasty.matches(long));
const simple = new TopicSelector("https://example.com/books/{id}");
const simplePerSecond = rate((i) => simple.matches(`https://example.com/books/${i}`));

console.log(`## Template selectors (\`node bench/template-selectors.mjs\`)

Run on ${new Date().toISOString()}: ${cpus()[0]?.model ?? "?"} × ${cpus().length}, Node.js ${process.version}, load average ${loadavg()
  .map((l) => l.toFixed(2))
  .join(" ")} at the end (shared machine: figures are noisy). In-process: the selector index alone, one
subscriber per selector group, each event's topic matching one group; "ns per template" is the event's time
divided by the distinct templates it was tested against.

| subscribers | distinct templates | subscribers per event | events matched/s | ns per template |
| --- | --- | --- | --- | --- |
${rows.join("\n")}

One match of \`https://example.com/books/{id}\`: ${Math.round(1e9 / simplePerSecond)} ns. One match of
\`{+a}{+b}{+c}{+d}{+e}{+f}x\` against a matching topic of 1,023 characters: ${(1e6 / nastyPerSecond).toFixed(0)} µs (a backtracking
regexp took 7.9 s for four such expressions on 256 characters on this machine).
`);
