import { connect, createServer, type Socket } from "node:net";

/** A TCP proxy on 127.0.0.1 that can freeze: hold every byte, both ways, without closing anything. */
export interface TcpProxy {
  port: number;
  url: string;
  /**
   * Stops forwarding: connections stay open (new ones are accepted too), their bytes are held.
   * `"requests"` holds only what clients send: answers to requests already sent still arrive.
   */
  freeze(only?: "requests" | "replication"): void;
  /** The bytes held on their way to the server, as text. */
  heldRequests(): string;
  /** Forwards what was held, in order, then everything again; closes what closed meanwhile. */
  thaw(): void;
  close(): Promise<void>;
}

interface Side {
  socket: Socket;
  held: Buffer[];
  /** The peer ended while frozen: end this side once its held bytes are written. */
  endAfterThaw: boolean;
}

/**
 * Starts a proxy to 127.0.0.1:`targetPort`. Frozen, it behaves like a link that went silent (a
 * failover without a reset, a NAT entry dropped): the client's writes succeed and nothing comes
 * back. On thaw, held requests reach the server, as they would when such a link recovers.
 */
export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  let frozen = false;
  let requestsOnly = false;
  let replicationOnly = false;
  const replication = new Set<Side>();
  const pairs = new Set<[Side, Side]>();
  const server = createServer((client) => {
    const upstream = connect(targetPort, "127.0.0.1");
    const toServer: Side = { socket: upstream, held: [], endAfterThaw: false };
    const toClient: Side = { socket: client, held: [], endAfterThaw: false };
    const pair: [Side, Side] = [toServer, toClient];
    pairs.add(pair);
    const pipe = (from: Socket, to: Side) => {
      from.on("data", (chunk: Buffer) => {
        if (from === client && /PSYNC|REPLCONF/i.test(chunk.toString("latin1"))) {
          replication.add(toServer);
          replication.add(toClient);
        }
        if (frozen && (!requestsOnly || to === toServer) && (!replicationOnly || replication.has(to)))
          to.held.push(chunk);
        else to.socket.write(chunk);
      });
      from.on("close", () => {
        if (frozen) to.endAfterThaw = true;
        else to.socket.end();
      });
      from.on("error", () => {});
    };
    pipe(client, toServer);
    pipe(upstream, toClient);
    client.on("close", () => {
      if (!frozen) pairs.delete(pair);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  return {
    port: address.port,
    url: `redis://127.0.0.1:${address.port}`,
    freeze(only) {
      frozen = true;
      requestsOnly = only === "requests";
      replicationOnly = only === "replication";
    },
    heldRequests() {
      return [...pairs].map(([toServer]) => Buffer.concat(toServer.held).toString()).join("");
    },
    thaw() {
      frozen = false;
      for (const pair of pairs) {
        for (const side of pair) {
          for (const chunk of side.held.splice(0)) if (!side.socket.destroyed) side.socket.write(chunk);
          if (side.endAfterThaw) side.socket.end();
        }
        if (pair[1].socket.destroyed) pairs.delete(pair);
      }
    },
    async close() {
      for (const pair of pairs) for (const side of pair) side.socket.destroy();
      pairs.clear();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
