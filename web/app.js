// The Herald dashboard: the live feed (GET /events?envelope=1), the clock (GET /ticks), the
// service at a glance (GET /stats/stream) and the publish form (POST /events).

import { createFeed } from "./feed.js";
import { createPublishForm } from "./publish.js";
import { describeRefusal } from "./refusal.js";
import { createReconnectingSource } from "./source.js";
import { createStatsView } from "./stats.js";

/** The topic rule of src/hub/topic.ts, checked here so a typo is explained before connecting. */
const TOPIC = /^[^\r\n\0\uD800-\uDFFF]{1,1024}$/u;
const byId = (id) => document.getElementById(id);

/** The server's RETRY_MS once /stats/stream has told it; the default until then. */
let retryMs = 3_000;

/** Where a browser page keeps its token for EventSource, which cannot send headers (see README, Security). */
const TOKEN_COOKIE = "herald_token";
const readToken = () =>
  document.cookie
    .split("; ")
    .find((c) => c.startsWith(`${TOKEN_COOKIE}=`))
    ?.slice(TOKEN_COOKIE.length + 1) || undefined;

// ---- Notices: replays after a reconnect, resets ----

const notice = byId("notice");
function showNotice(kind, text) {
  notice.dataset.kind = kind;
  byId("notice-text").textContent = text;
  notice.hidden = false;
}
byId("notice-close").addEventListener("click", () => {
  notice.hidden = true;
});

/** The reconnect being reported, while its replayed events arrive. */
let resume;
function showResume() {
  const { from, downMs, replayed } = resume;
  const away = downMs === undefined ? "" : ` after ${(downMs / 1000).toFixed(1)} s away`;
  const events = replayed === 1 ? "1 missed event" : `${replayed.toLocaleString()} missed events`;
  showNotice("info", `Reconnected${away} and resumed after #${from}: ${events} replayed.`);
}

// ---- Live feed ----

const eventNames = byId("event-names");
const lastId = byId("last-id");
const list = byId("feed");
const feedEmpty = byId("feed-empty");
const feed = createFeed({
  list,
  status: byId("feed-status"),
  onRender: () => {
    lastId.textContent = feedSource.lastEventId || "–";
    feedEmpty.hidden = list.childElementCount > 0;
  },
  onNewName: (name) => eventNames.append(new Option(name)),
});

function parseTopics(text) {
  const names = text.split(/[\s,]+/).filter(Boolean);
  if (names.length === 0) return { topics: ["*"] };
  const bad = names.find((name) => name !== "*" && !TOPIC.test(name));
  if (bad !== undefined) {
    return {
      error: `"${bad}" is not a topic: use 1 to 1024 characters, a URI template such as orders/{id}, or * for every topic.`,
    };
  }
  return { topics: names.includes("*") ? ["*"] : [...new Set(names)] };
}

const topicsInput = byId("topics");
const topicsError = byId("topics-error");
let topics = parseTopics(new URLSearchParams(location.search).getAll("topic").join(" ")).topics ?? ["*"];
topicsInput.value = topics.join(", ");

function onEnvelope(event) {
  let envelope;
  try {
    envelope = JSON.parse(event.data);
  } catch {
    envelope = { topic: "?", data: event.data, time: new Date().toISOString() };
  }
  if (envelope.replayed && resume !== undefined) {
    resume.replayed++;
    showResume();
  }
  feed.add({
    id: event.lastEventId,
    topic: envelope.topic,
    event: envelope.event ?? "message",
    data: envelope.data,
    time: new Date(envelope.time),
    replayed: envelope.replayed === true,
    private: envelope.private === true,
  });
}

function onReset(event) {
  let info = {};
  try {
    info = JSON.parse(event.data);
  } catch {
    // Shown as it came.
  }
  resume = undefined;
  showNotice(
    "warning",
    `Events may have been lost: the server no longer had #${info.lastEventId ?? "?"} in its history ` +
      "(it restarted, or the id was too old), so it could not replay what was missed. The feed continues live.",
  );
  feed.add({
    id: event.lastEventId,
    topic: topics.join(", "),
    event: "reset",
    data: event.data,
    time: new Date(),
    reset: true,
  });
}

const stateOutput = byId("state");
const retryIn = byId("retry-in");
const toggle = byId("toggle");
let countdown;
function showFeedState(change) {
  stateOutput.textContent = change.state;
  stateOutput.dataset.state = change.state;
  toggle.textContent = change.state === "closed" ? "Connect" : "Disconnect";
  clearInterval(countdown);
  retryIn.hidden = change.state !== "reconnecting";
  if (change.state === "reconnecting") {
    const tick = () => {
      const seconds = Math.max(0, Math.ceil((change.retryAt - Date.now()) / 1000));
      retryIn.textContent = seconds > 0 ? `in ${seconds} s` : "now…";
    };
    tick();
    countdown = setInterval(tick, 250);
  }
  if (change.state === "open" && change.resumedFrom) {
    resume = { from: change.resumedFrom, downMs: change.downMs, replayed: 0 };
    showResume();
  }
  if (change.refused) {
    showNotice("warning", `Herald refused the feed. ${describeRefusal(change.refused, "The feed needs a token.")}`);
  }
}

const feedSource = createReconnectingSource({
  url: (lastEventId) => {
    const query = new URLSearchParams();
    for (const topic of topics) query.append("topic", topic);
    query.set("envelope", "1");
    if (lastEventId) query.set("lastEventId", lastEventId);
    return `/events?${query}`;
  },
  listeners: { message: onEnvelope, reset: onReset },
  onState: showFeedState,
  retryMs: () => retryMs,
});

/** The empty feed shows how to publish to what it follows. */
function showCurlExample() {
  const topic = topics[0] === "*" ? "news" : topics[0];
  byId("curl-example").textContent = `curl -d topic=${topic} -d data=hello ${location.origin}/events`;
}

function subscribe(next) {
  topics = next;
  topicsInput.value = topics.join(", ");
  showCurlExample();
  const query = new URLSearchParams(topics.map((topic) => ["topic", topic]));
  history.replaceState(null, "", topics.length === 1 && topics[0] === "*" ? location.pathname : `?${query}`);
  notice.hidden = true;
  resume = undefined;
  // The new feed starts fresh: the old one's events and last id would pass for its own.
  feed.clear();
  lastId.textContent = "–";
  feedSource.start({ fresh: true });
}

byId("subscribe").addEventListener("submit", (event) => {
  event.preventDefault();
  const parsed = parseTopics(topicsInput.value);
  topicsError.textContent = parsed.error ?? "";
  topicsError.hidden = parsed.error === undefined;
  topicsInput.setAttribute("aria-invalid", String(parsed.error !== undefined));
  if (parsed.topics) subscribe(parsed.topics);
});

toggle.addEventListener("click", () => {
  if (feedSource.state === "closed") feedSource.start();
  else feedSource.stop();
});

const pause = byId("pause");
pause.addEventListener("click", () => {
  feed.setPaused(!feed.paused);
  pause.setAttribute("aria-pressed", String(feed.paused));
  pause.textContent = feed.paused ? "Resume" : "Pause";
});
byId("clear").addEventListener("click", () => feed.clear());
byId("filter").addEventListener("input", (event) => feed.setFilter(event.target.value));

// ---- Publish ----

createPublishForm(byId("publish"), {
  onPublished: (answer) =>
    topics.includes("*") || topics.includes(answer.topic) ? "" : ` (not shown: the feed is not on ${answer.topic})`,
  token: readToken,
});

// ---- Clock ----

const clock = byId("clock");
const clockTime = byId("clock-time");
const clockSeq = byId("clock-seq");
const clockSource = createReconnectingSource({
  url: (lastEventId) => (lastEventId ? `/ticks?lastEventId=${encodeURIComponent(lastEventId)}` : "/ticks"),
  listeners: {
    tick: (event) => {
      const { time, seq } = JSON.parse(event.data);
      clockTime.dateTime = time;
      clockTime.textContent = new Date(time).toLocaleTimeString([], { hourCycle: "h23" });
      clockSeq.textContent = `tick ${seq}`;
    },
  },
  onState: (change) => {
    clock.dataset.state = change.state;
  },
  retryMs: () => retryMs,
});

// ---- Service at a glance ----

const topicNames = byId("topic-names");
const statsState = byId("stats-state");
const statsRefused = byId("stats-refused");
const statsView = createStatsView(byId("stats"), {
  onWatch: (topic) => {
    subscribe(topics.includes("*") ? [topic] : [...new Set([...topics, topic])]);
    byId("feed-title").focus();
  },
});
const statsSource = createReconnectingSource({
  url: () => "/stats/stream",
  listeners: {
    stats: (event) => {
      const sample = JSON.parse(event.data);
      retryMs = sample.retryMs;
      statsView.update(sample);
      const known = new Set([...topicNames.options].map((o) => o.value));
      for (const topic of Object.keys(sample.topics))
        if (topic !== "*" && !known.has(topic)) topicNames.append(new Option(topic));
    },
  },
  onState: (change) => {
    statsState.textContent = change.state === "open" ? "live" : change.refused ? "refused" : change.state;
    statsState.dataset.state = change.state;
    statsRefused.hidden = !change.refused;
    statsRefused.textContent = change.refused
      ? describeRefusal(change.refused, "The service figures need a token, because they name every topic.")
      : "";
  },
  retryMs: () => retryMs,
});

// A hidden tab keeps only its feed: browsers allow six HTTP/1.1 connections per server, and
// each visible dashboard holds three.
function followVisibility() {
  if (document.visibilityState === "hidden") {
    clockSource.stop();
    statsSource.stop();
  } else if (clockSource.state === "closed") {
    clockSource.start();
    statsSource.start();
  }
}
document.addEventListener("visibilitychange", followVisibility);

// ---- Token ----

const tokenState = byId("token-state");
function useToken(token) {
  // A session cookie for this origin only, sent by EventSource; SameSite keeps other sites from using it.
  // biome-ignore lint/suspicious/noDocumentCookie: the Cookie Store API exists only in secure contexts, and Herald is often plain HTTP.
  document.cookie = token
    ? `${TOKEN_COOKIE}=${token}; path=/; SameSite=Strict`
    : `${TOKEN_COOKIE}=; path=/; SameSite=Strict; Max-Age=0`;
  tokenState.textContent = token ? "Token in use." : "No token.";
  notice.hidden = true;
  // Resumed, not fresh: the feed replays what it missed meanwhile, now with the token's rights.
  feedSource.start();
  if (document.visibilityState !== "hidden") {
    clockSource.start();
    statsSource.start();
  }
}
byId("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = byId("token");
  const token = input.value.trim();
  // A JWT is three base64url parts: anything else would not survive a cookie.
  if (!/^[\w-]+\.[\w-]*\.[\w-]*$/.test(token)) {
    tokenState.textContent = "That is not a JWT (three base64url parts separated by dots).";
    return;
  }
  input.value = "";
  useToken(token);
});
byId("token-forget").addEventListener("click", () => useToken(undefined));
tokenState.textContent = readToken() ? "Token in use." : "No token.";

showCurlExample();
feedSource.start({ fresh: true });
followVisibility();
