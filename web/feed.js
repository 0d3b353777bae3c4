// The live feed: every event is kept in a bounded buffer and the list shows the newest
// MAX_ROWS of them. The DOM is touched at most once per animation frame, however many events
// arrived, and rows are reused rather than created, so the page stays fast after any number of
// events. Event data only ever reaches the page as textContent.

/** Rows in the list. */
const MAX_ROWS = 200;
/** Events kept in memory, so a new filter or a resume can show the newest matches. */
const MAX_KEPT = 2_000;
/** Data longer than this (characters or lines) is folded behind a summary. */
const FOLD_CHARS = 280;
const FOLD_LINES = 8;
const SUMMARY_CHARS = 100;

/**
 * @typedef {{ id: string, topic: string, event: string, data: string, time: Date,
 *             replayed?: boolean, reset?: boolean, private?: boolean }} FeedItem
 */

const pad = (n, width = 2) => String(n).padStart(width, "0");
const clockTime = (t) =>
  `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}.${pad(t.getMilliseconds(), 3)}`;

/** JSON objects and arrays pretty-printed; anything else as it came. */
function prettyData(data) {
  const first = data.trimStart()[0];
  if (first === "{" || first === "[") {
    try {
      return JSON.stringify(JSON.parse(data), null, 2);
    } catch {
      // Not JSON after all: shown as text.
    }
  }
  return data;
}

function element(tag, className) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  return el;
}

function createRow() {
  const row = element("li", "event");
  const meta = element("div", "meta");
  const parts = {
    time: element("time"),
    topic: element("span", "topic"),
    name: element("span", "name"),
    id: element("span", "id"),
    badge: element("span", "badge"),
    short: element("pre", "data"),
    long: element("details", "data"),
    summary: element("summary"),
    full: element("pre"),
  };
  meta.append(parts.time, parts.topic, parts.name, parts.id, parts.badge);
  parts.long.append(parts.summary, parts.full);
  row.append(meta, parts.short, parts.long);
  row.parts = parts;
  return row;
}

function fillRow(row, item) {
  const p = row.parts;
  item.text ??= prettyData(item.data);
  const text = item.text;
  row.dataset.id = item.id;
  row.classList.toggle("replayed", item.replayed === true);
  row.classList.toggle("reset", item.reset === true);
  p.time.textContent = clockTime(item.time);
  p.time.dateTime = item.time.toISOString();
  p.topic.textContent = item.topic;
  p.name.textContent = item.event;
  p.id.textContent = item.id === "" ? "" : `#${item.id}`;
  const badges = [item.reset && "reset", item.private && "private", item.replayed && "replayed"].filter(Boolean);
  p.badge.textContent = badges.join(" · ");
  p.badge.hidden = badges.length === 0;
  let lines = 1;
  for (let i = text.indexOf("\n"); i !== -1 && lines <= FOLD_LINES; i = text.indexOf("\n", i + 1)) lines++;
  const fold = text.length > FOLD_CHARS || lines > FOLD_LINES;
  p.short.hidden = fold;
  p.long.hidden = !fold;
  if (fold) {
    // The data as it came is the compact form of pretty-printed JSON: a more telling first line.
    const lineEnd = item.data.indexOf("\n");
    const firstLine = (lineEnd === -1 ? item.data : item.data.slice(0, lineEnd)).slice(0, SUMMARY_CHARS);
    p.summary.textContent = `${firstLine} … (${item.data.length.toLocaleString()} characters)`;
    p.full.textContent = text;
    p.long.open = false;
    p.short.textContent = "";
  } else {
    p.short.textContent = text;
    p.full.textContent = "";
  }
  return row;
}

/**
 * The feed view over `list`. `status` shows the counts; `onRender` runs after each frame that
 * drew, `onNewName` once for each event name seen.
 */
export function createFeed({ list, status, onRender, onNewName }) {
  /** @type {(FeedItem & { seq: number, text?: string })[]} */
  let kept = [];
  const names = new Set();
  const spare = [];
  let received = 0;
  let renderedSeq = 0;
  let paused = false;
  let pausedAtSeq = 0;
  let filter = "";
  let needsFull = false;
  let scheduled = false;

  const matches = (item) => filter === "" || item.event.toLowerCase().includes(filter);

  const updateStatus = () => {
    const shown = list.childElementCount;
    let text = `${received.toLocaleString()} received · ${shown.toLocaleString()} shown`;
    if (paused) text += ` · paused, ${(received - pausedAtSeq).toLocaleString()} new`;
    status.textContent = text;
  };

  const releaseRows = (count) => {
    for (let i = 0; i < count && list.lastElementChild; i++) {
      const row = list.lastElementChild;
      row.remove();
      spare.push(row);
    }
  };

  const draw = (items, prepend) => {
    const fragment = document.createDocumentFragment();
    for (const item of items) fragment.append(fillRow(spare.pop() ?? createRow(), item));
    if (prepend) list.prepend(fragment);
    else list.append(fragment);
  };

  /** The newest matching items after `afterSeq`, newest first, at most MAX_ROWS. */
  const newest = (afterSeq) => {
    const out = [];
    for (let i = kept.length - 1; i >= 0 && kept[i].seq > afterSeq && out.length < MAX_ROWS; i--) {
      if (matches(kept[i])) out.push(kept[i]);
    }
    return out;
  };

  const render = () => {
    scheduled = false;
    if (!paused) {
      if (needsFull) {
        needsFull = false;
        releaseRows(list.childElementCount);
        draw(newest(0), false);
      } else {
        const fresh = newest(renderedSeq);
        releaseRows(list.childElementCount + fresh.length - MAX_ROWS);
        draw(fresh, true);
      }
      renderedSeq = received;
    }
    updateStatus();
    onRender?.();
  };

  const schedule = () => {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(render);
  };

  return {
    /** Adds an event; it is drawn on the next frame. */
    add(item) {
      item.seq = ++received;
      kept.push(item);
      if (kept.length > 2 * MAX_KEPT) kept = kept.slice(-MAX_KEPT);
      if (!names.has(item.event) && names.size < 500) {
        names.add(item.event);
        onNewName?.(item.event);
      }
      schedule();
    },
    get paused() {
      return paused;
    },
    /** Freezes the list (events are still received and kept) or brings it up to date. */
    setPaused(value) {
      if (value === paused) return;
      paused = value;
      pausedAtSeq = received;
      needsFull = !value;
      schedule();
    },
    /** Empties the list and the buffer. */
    clear() {
      kept = [];
      received = 0;
      renderedSeq = 0;
      pausedAtSeq = 0;
      releaseRows(list.childElementCount);
      schedule();
    },
    /** Shows only events whose name contains `text` (any case); "" shows all. */
    setFilter(text) {
      filter = text.trim().toLowerCase();
      needsFull = true;
      schedule();
    },
  };
}
