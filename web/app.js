// The minimal Herald page: one EventSource on the chosen topics, newest event first.
const MAX_ROWS = 200;
const feed = document.getElementById("feed");
const state = document.getElementById("state");
const lastId = document.getElementById("last-id");
const topicsInput = document.getElementById("topics");
let source;

function show(kind, event) {
  const row = document.createElement("li");
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = `${new Date().toLocaleTimeString()} ${kind} #${event.lastEventId || "–"}`;
  const data = document.createElement("pre");
  data.textContent = event.data; // text, never HTML
  row.append(meta, data);
  feed.prepend(row);
  while (feed.childElementCount > MAX_ROWS) feed.lastElementChild.remove();
  lastId.textContent = event.lastEventId || "–";
}

function connect() {
  source?.close();
  const params = new URLSearchParams();
  for (const topic of topicsInput.value
    .split(",")
    .map((t) => t.trim())
    .filter(Boolean))
    params.append("topic", topic);
  source = new EventSource(`/events?${params}`);
  state.textContent = "connecting";
  source.onopen = () => {
    state.textContent = "open";
  };
  source.onerror = () => {
    state.textContent = source.readyState === EventSource.CLOSED ? "closed" : "reconnecting";
  };
  source.onmessage = (event) => show("message", event);
  source.addEventListener("reset", (event) => show("reset", event));
  // Named events other than "message" only reach listeners registered by name; "*" shows them too.
  for (const name of ["update", "tick"]) source.addEventListener(name, (event) => show(name, event));
}

document.getElementById("subscribe").addEventListener("submit", (event) => {
  event.preventDefault();
  connect();
});
connect();
