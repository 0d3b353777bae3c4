import type { IncomingMessage } from "node:http";
import type { Http2Session } from "node:http2";
import type { Server, Socket } from "node:net";
import { type TLSSocket, Server as TlsServer } from "node:tls";

/**
 * Watches `server`'s connections and returns what to call on shutdown, after the streams were
 * ended, so that `server.close()` does not wait on clients:
 * - sockets that never carried a request (browsers and undici open them ahead of time) are not
 *   "idle" to Node's `server.close()`, which would wait for the client to drop them: destroyed;
 * - HTTP/2 connections are closed with `GOAWAY`: the client opens no new stream on them, and
 *   the connection closes once its streams (ended just before) are done, so clients reconnect
 *   elsewhere on a new connection.
 * Over TLS a socket counts from its handshake (`secureConnection`); one still in its handshake is
 * left to the handshake timeout.
 */
export function trackIdleConnections(server: Server): () => void {
  const unused = new Set<Socket>();
  const sessions = new Set<Http2Session>();
  const secure = server instanceof TlsServer;
  // One listener for every socket, not a closure each: a socket that carries an event stream
  // lives for hours, and at tens of thousands of them every object per socket counts.
  function forget(this: Socket): void {
    unused.delete(this);
  }
  server.on(secure ? "secureConnection" : "connection", (socket: Socket) => {
    // An HTTP/2 connection is its session, closed below; its requests never name this socket.
    if (secure && (socket as TLSSocket).alpnProtocol === "h2") return;
    unused.add(socket);
    socket.on("close", forget);
  });
  server.on("request", (request: IncomingMessage) => {
    if (unused.delete(request.socket)) request.socket.off("close", forget);
  });
  server.on("session", (session: Http2Session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  return () => {
    for (const socket of unused) socket.destroy();
    for (const session of sessions) session.close();
  };
}
