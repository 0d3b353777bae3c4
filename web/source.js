// An EventSource that the page reconnects itself, so it can show the retry delay counting down,
// keep trying after errors that make the browser give up (a 502 from a proxy during a restart),
// and resume from the last event id it saw.

/** Longest wait between two attempts, however many failed. */
const MAX_RETRY_MS = 30_000;

/**
 * Asks the server why a stream failed. An answer with a 4xx status (a bad or missing token, a bad
 * topic) is a refusal: retrying cannot help, so it is returned (`{ status, code, message }`) for
 * the page to show. No answer (the
 * server is down), a 5xx or a 429 (a limit) is an outage, and `undefined` is returned.
 */
async function refusal(url) {
  const abort = new AbortController();
  try {
    const response = await fetch(url, { signal: abort.signal, headers: { accept: "text/event-stream" } });
    if (response.ok || response.status >= 500 || response.status === 429) return undefined;
    const body = await response.json().catch(() => ({}));
    return { status: response.status, code: body.code ?? response.statusText, message: body.message ?? "" };
  } catch {
    return undefined;
  } finally {
    abort.abort();
  }
}

/**
 * @typedef {"connecting" | "open" | "reconnecting" | "closed"} SourceState
 * `resumedFrom` is the id an open stream resumed after ("" for none); `downMs` how long it was away;
 * `refused` the server's answer when it refused the stream (the source then stays closed).
 * @typedef {{ state: SourceState, retryAt?: number, resumedFrom?: string, downMs?: number,
 *             refused?: { status: number, code: string, message: string } }} StateChange
 */

/**
 * Opens `url(lastEventId)` with EventSource and calls `listeners[name](event)` for each event.
 * On an error it closes that EventSource and opens a new one after `retryMs()` (doubling, up to
 * 30 s, while attempts keep failing), passing the last id seen so the server replays what was
 * missed. When the server refuses the stream (a 4xx), it stops and says why. `onState` hears
 * every change of state.
 */
export function createReconnectingSource({ url, listeners, onState, retryMs }) {
  let source;
  let timer;
  let failures = 0;
  let lastEventId = "";
  let downSince = 0;
  let state = "closed";

  const setState = (change) => {
    state = change.state;
    onState?.(change);
  };

  const connect = () => {
    clearTimeout(timer);
    timer = undefined;
    source?.close();
    const resumedFrom = lastEventId;
    source = new EventSource(url(lastEventId));
    if (failures === 0) setState({ state: "connecting" });
    source.onopen = () => {
      failures = 0;
      const downMs = downSince === 0 ? undefined : Date.now() - downSince;
      downSince = 0;
      setState({ state: "open", resumedFrom, ...(downMs !== undefined && { downMs }) });
    };
    const failed = source;
    source.onerror = async () => {
      // Closed here and reopened by us, whatever the browser would do next.
      failed.close();
      failures++;
      if (downSince === 0) downSince = Date.now();
      const delay = Math.min(retryMs() * 2 ** (failures - 1), MAX_RETRY_MS);
      setState({ state: "reconnecting", retryAt: Date.now() + delay });
      timer = setTimeout(connect, delay);
      const refused = await refusal(failed.url);
      // Only if nothing else (a restart, a stop) has happened to this source meanwhile.
      if (refused !== undefined && source === failed) {
        clearTimeout(timer);
        timer = undefined;
        setState({ state: "closed", refused });
      }
    };
    for (const [name, listener] of Object.entries(listeners)) {
      source.addEventListener(name, (event) => {
        // Mirrors the browser's last event id: an event without an id keeps the previous one.
        lastEventId = event.lastEventId;
        listener(event);
      });
    }
  };

  // Back online: no point waiting out the countdown.
  window.addEventListener("online", () => {
    if (state === "reconnecting") connect();
  });

  return {
    /** Opens a new subscription (forgetting the last id when `fresh`). */
    start({ fresh = false } = {}) {
      if (fresh) {
        lastEventId = "";
        downSince = 0;
      }
      failures = 0;
      connect();
    },
    /** Closes the stream and stops reconnecting. */
    stop() {
      clearTimeout(timer);
      timer = undefined;
      source?.close();
      source = undefined;
      downSince = 0;
      setState({ state: "closed" });
    },
    get lastEventId() {
      return lastEventId;
    },
    get state() {
      return state;
    },
  };
}
