import { normalizeIP } from "@fastify/rate-limit";

/**
 * The key every per-client limit counts by (`MAX_CONNECTIONS_PER_IP`, `PUBLISH_RATE_LIMIT`): an
 * IPv4 address as it is, an IPv6 address by its /64 prefix (one host usually holds a whole /64, so
 * counting full addresses would let it open a new quota per address), an IPv4-mapped IPv6 address
 * as the IPv4 address.
 */
export function clientKey(ip: string): string {
  return normalizeIP(ip, 64);
}
