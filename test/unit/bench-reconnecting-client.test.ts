import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { type ClientEvents, ReconnectingClient } from "../../bench/reconnecting-client.js";
import { waitFor } from "../helpers/wait.js";

const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/** A server that answers its n-th request with `answers[n]`, and records each request's Last-Event-ID. */
async function serve(
  answers: ((res: ServerResponse) => void)[],
): Promise<{ port: number; lastIds: (string | undefined)[] }> {
  const lastIds: (string | undefined)[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    lastIds.push(req.headers["last-event-id"] as string | undefined);
    answers[lastIds.length - 1]?.(res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  closers.push(
    () => new Promise((resolve) => server.close(resolve)),
    () => server.closeAllConnections(),
  );
  return { port: (server.address() as AddressInfo).port, lastIds };
}

function recorder() {
  const seen = { messages: [] as string[], refused: [] as string[], failed: [] as string[], opened: 0, dropped: 0 };
  const events: ClientEvents = {
    open: () => seen.opened++,
    message: (_c, id) => seen.messages.push(id),
    reset: (_c, data) => seen.messages.push(`reset ${data}`),
    refused: (_c, reason) => seen.refused.push(reason),
    failed: (_c, code) => seen.failed.push(code),
    dropped: () => seen.dropped++,
  };
  return { seen, events };
}

const SSE = { "content-type": "text/event-stream" };

describe("the storm bench's ReconnectingClient", () => {
  it("reconnects as EventSource does: after retry:, with the last event id, across chunks split mid-line", async () => {
    const { port, lastIds } = await serve([
      (res) => {
        res.writeHead(200, SSE);
        res.write("retry: 50\n\n");
        res.write("id: s1\ndata: 1\n\n");
        // Another type still sets the last event id; a comment changes nothing.
        res.end("id: s2\nevent: other\ndata: x\n\n:\n\n");
      },
      (res) => {
        res.writeHead(503, { "content-type": "application/json", "retry-after": "0" });
        res.end('{"code":"HERALD_CONNECTION_LIMIT","message":"full"}');
      },
      (res) => {
        res.writeHead(200, SSE);
        res.write("id: s");
        res.write("3\r\nda");
        res.write("ta: 3\n\n");
      },
    ]);
    const { seen, events } = recorder();
    const client = new ReconnectingClient([port], "127.0.0.1", "/events", events);
    closers.push(() => client.close());
    client.connect();
    await waitFor("the event after the reconnections", () => seen.messages.includes("s3"), 5_000);
    expect(seen.messages).toEqual(["s1", "s3"]);
    expect(lastIds).toEqual([undefined, "s2", "s2"]);
    expect(seen.refused).toEqual(["503 HERALD_CONNECTION_LIMIT"]);
    expect(seen).toMatchObject({ opened: 2, dropped: 1, failed: [] });
    expect(client.retryMs).toBe(50);
    expect(client.state).toBe("open");
  });

  it("moves to the next port at once when a connection is refused, as a load balancer would", async () => {
    const { port } = await serve([
      (res) => {
        res.writeHead(200, SSE);
        res.write("id: s1\ndata: 1\n\n");
      },
    ]);
    const dead = await serve([]);
    await Promise.all(closers.splice(2, 2).map((close) => close()));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const { seen, events } = recorder();
    // The first port no longer listens; the default wait before a retry (3 s) is not taken.
    const client = new ReconnectingClient([dead.port, port], "127.0.0.1", "/events", events);
    closers.push(() => client.close());
    client.connect();
    await waitFor("the event from the second port", () => seen.messages.length === 1, 2_000);
    expect(seen.failed).toEqual(["ECONNREFUSED"]);
  });
});
