import { InvalidQueryError } from "../errors.js";

/** At most this many unknown names are quoted back, each cut to `MAX_NAME_CHARS`. */
const MAX_NAMES = 5;
const MAX_NAME_CHARS = 64;

/** Edit distance, for suggestions: small strings only (query parameter names). */
function distance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(
        (previous[j] ?? 0) + 1,
        (row[j - 1] ?? 0) + 1,
        (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = row;
  }
  return previous[b.length] ?? 0;
}

/** The known name `name` was most likely meant to be (`topics` → `topic`, `lastEventID` → `lastEventId`). */
function suggest(name: string, known: readonly string[]): string | undefined {
  const lower = name.toLowerCase();
  return known.find((k) => k.toLowerCase() === lower || (name.length <= 40 && distance(lower, k.toLowerCase()) <= 2));
}

/**
 * Refuses a stream request with a query parameter the route does not take, so a typo
 * (`?topics=a`) is a 400 naming it rather than a stream of something else. `known` lists the
 * route's parameters; a route that takes more (a protocol adapter's) passes its own list.
 */
export function rejectUnknownQuery(route: string, query: unknown, known: readonly string[]): void {
  const unknown = Object.keys(query ?? {}).filter((name) => !known.includes(name));
  if (unknown.length === 0) return;
  const quoted = unknown.slice(0, MAX_NAMES).map((name) => {
    const hint = suggest(name, known);
    return `${JSON.stringify(name.slice(0, MAX_NAME_CHARS))}${hint === undefined ? "" : ` (did you mean ${hint}?)`}`;
  });
  const more = unknown.length > MAX_NAMES ? ` and ${unknown.length - MAX_NAMES} more` : "";
  throw new InvalidQueryError(
    `Unknown query parameter${unknown.length > 1 ? "s" : ""} ${quoted.join(", ")}${more}: ${route} takes ${known.length === 0 ? "none" : known.join(", ")}`,
  );
}
