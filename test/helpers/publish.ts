import { request } from "undici";

/** What a publish answers, as far as most tests read it. */
interface PublishJson {
  id?: string;
  ids?: string[];
  code?: string;
  message?: string;
}

/**
 * POSTs `body` as JSON to `${url}/events` (an event, a batch as an array, or anything a test
 * wants refused); returns the status and the parsed answer.
 */
export async function publishTo<T = PublishJson>(url: string, body: unknown): Promise<{ status: number; json: T }> {
  const res = await request(`${url}/events`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.statusCode, json: (await res.body.json()) as T };
}
