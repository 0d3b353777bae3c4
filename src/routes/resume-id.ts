import { singleQueryValue } from "../query-value.js";

/**
 * Node reads header bytes as latin1; browsers send Last-Event-ID as UTF-8. Decode it as UTF-8
 * when it is valid UTF-8, so an id like `café-1` matches; otherwise keep the bytes as they came.
 */
function decodeHeader(value: string): string {
  if (!/[\u0080-\u00ff]/.test(value)) return value;
  const utf8 = Buffer.from(value, "latin1").toString("utf8");
  return utf8.includes("\uFFFD") ? value : utf8;
}

/** The id to resume after: the Last-Event-ID header, else the `lastEventId` (Mercure: `lastEventID`) query parameter. */
export function resumeId(
  header: string | string[] | undefined,
  query: string | string[] | undefined,
  queryName = "lastEventId",
): string | undefined {
  // The header wins: EventSource keeps the URL (and its lastEventId) on reconnect but sends
  // the newest id in Last-Event-ID.
  if (typeof header === "string" && header !== "") return decodeHeader(header);
  return singleQueryValue(queryName, query) || undefined;
}
