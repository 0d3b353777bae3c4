import { connect, type Socket } from "node:net";

/** A raw client that asked for a stream and reads nothing. */
export interface StalledClient {
  socket: Socket;
  /** True once the connection has closed (the server dropped it, or it ended). */
  closed(): boolean;
}

/** Sends a GET for `path` over a raw socket, then never reads a byte (the socket is paused). */
export async function stalledClient(url: string, path: string, headers = ""): Promise<StalledClient> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  await new Promise((resolve) => socket.once("connect", resolve));
  socket.write(`GET ${path} HTTP/1.1\r\nHost: ${hostname}\r\nAccept: text/event-stream\r\n${headers}\r\n`);
  socket.pause();
  let closedByServer = false;
  socket.on("close", () => {
    closedByServer = true;
  });
  socket.on("error", () => {});
  return { socket, closed: () => closedByServer };
}
