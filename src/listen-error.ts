import type { Config } from "./config.js";

/**
 * Says why Herald could not listen, naming the setting to change, for the errors a newcomer meets
 * (a busy port, a privileged port, a HOST that is not this machine's); `undefined` for any other.
 */
export function describeListenError(
  err: NodeJS.ErrnoException,
  config: Pick<Config, "host" | "port">,
): string | undefined {
  const { host, port } = config;
  switch (err.code) {
    case "EADDRINUSE":
      return (
        `port ${port} on ${host} is already in use (another Herald, or another server). ` +
        `Set PORT to a free port (PORT=${port === 65_535 ? port - 1 : port + 1} npm start), or stop what is using it`
      );
    case "EACCES":
      return `port ${port} needs privileges this process does not have: set PORT to a port above 1023 (PORT=3000), or put a reverse proxy in front`;
    case "EADDRNOTAVAIL":
      return `HOST=${host} is not an address of this machine: set HOST to one of its addresses, 127.0.0.1 for this machine only or 0.0.0.0 for every interface`;
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return `HOST=${host} does not resolve to an address: set HOST to an IP address (127.0.0.1, or 0.0.0.0 for every interface) or a known host name`;
    default:
      return undefined;
  }
}
