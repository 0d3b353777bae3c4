import { request } from "undici";

/** POSTs one event (or a batch, as an array) as JSON to `${url}/events`; returns the status and the parsed body. */
export async function publishTo(
  url: string,
  body: Record<string, unknown> | Record<string, unknown>[],
): Promise<{ status: number; json: { id?: string; ids?: string[]; code?: string; message?: string } }> {
  const res = await request(`${url}/events`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.statusCode, json: (await res.body.json()) as { id?: string } };
}
