// "Service at a glance": the figures of each `stats` event from /stats/stream, two live charts
// and the busiest topics, each with a button that adds it to the feed.

import { createChart } from "./chart.js";

/** Topics listed; the rest are counted in one line. */
const MAX_TOPIC_ROWS = 20;

function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

function formatDuration(seconds) {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return h > 0 ? `${h} h ${m} min` : m > 0 ? `${m} min ${s} s` : `${s} s`;
}

const formatRate = (n) => (Number.isInteger(n) ? n.toLocaleString() : n.toFixed(1));

/** How each figure is shown, by the `data-stat` attribute of its element. */
const FIGURES = {
  connections: (s) => s.connections.toLocaleString(),
  topicCount: (s) => Object.keys(s.topics).length.toLocaleString(),
  publishedPerS: (s) => formatRate(s.publishedPerS),
  deliveredPerS: (s) => formatRate(s.deliveredPerS),
  published: (s) => s.published.toLocaleString(),
  delivered: (s) => s.delivered.toLocaleString(),
  replays: (s) => s.replays.toLocaleString(),
  resets: (s) => s.resets.toLocaleString(),
  closedTooSlow: (s) => s.closedTooSlow.toLocaleString(),
  bufferedBytes: (s) => formatBytes(s.bufferedBytes),
  timers: (s) => s.timers.toLocaleString(),
  uptime: (s) => formatDuration(s.uptimeS),
};

/**
 * The stats panel in `root`. `onWatch(topic)` runs when a topic's "Watch" button is pressed.
 */
export function createStatsView(root, { onWatch }) {
  const cells = [...root.querySelectorAll("[data-stat]")];
  const charts = {
    publishedPerS: createChart(root.querySelector("#chart-published"), { label: "Events published per second" }),
    deliveredPerS: createChart(root.querySelector("#chart-delivered"), { label: "Events delivered per second" }),
  };
  const tbody = root.querySelector("#topic-table tbody");
  const more = root.querySelector("#topics-more");
  let listed = "";

  const renderTopics = (entries) => {
    const key = entries.map(([topic]) => topic).join("\n");
    if (key === listed) {
      // Same topics in the same order: only the counts change, and keyboard focus stays put.
      entries.forEach(([, n], i) => {
        tbody.rows[i].cells[1].textContent = n.toLocaleString();
      });
      return;
    }
    listed = key;
    const focused = document.activeElement?.closest("#topic-table tr")?.dataset.topic;
    tbody.replaceChildren();
    for (const [topic, n] of entries) {
      const row = tbody.insertRow();
      row.dataset.topic = topic;
      const name = document.createElement("th");
      name.scope = "row";
      name.textContent = topic;
      const count = row.insertCell();
      count.textContent = n.toLocaleString();
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "Watch";
      button.setAttribute("aria-label", `Watch topic ${topic} in the feed`);
      button.addEventListener("click", () => onWatch(topic));
      row.prepend(name);
      row.insertCell().append(button);
      if (topic === focused) button.focus();
    }
  };

  return {
    /** Shows one sample of /stats/stream. */
    update(sample) {
      for (const cell of cells) cell.textContent = FIGURES[cell.dataset.stat](sample);
      charts.publishedPerS.push(sample.publishedPerS);
      charts.deliveredPerS.push(sample.deliveredPerS);
      const entries = Object.entries(sample.topics).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
      renderTopics(entries.slice(0, MAX_TOPIC_ROWS));
      const rest = entries.length - MAX_TOPIC_ROWS;
      more.hidden = rest <= 0;
      more.textContent = rest > 0 ? `and ${rest.toLocaleString()} more topics` : "";
      root.querySelector("#topics-empty").hidden = entries.length > 0;
    },
  };
}
