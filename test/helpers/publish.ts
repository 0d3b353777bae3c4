import { request } from "undici";

/** POSTs one event as JSON to `${url}/events`; returns the status and the parsed body. */
export async function publishTo(
  url: string,
  body: Record<string, unknown>,
): Promise<{ status: number; json: { id?: string; code?: string; message?: string } }> {
  const res = await request(`${url}/events`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.statusCode, json: (await res.body.json()) as { id?: string } };
}
