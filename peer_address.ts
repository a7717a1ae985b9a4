/**
 * The two ends of an Ice connection, as addresses: who a request came from
 * (the streaming service sends RTP there, the Authenticator slows down wrong
 * guesses per host, the acceptor counts connections per host).
 *
 * @module
 */
import { Ice } from "ice";

/** `address` as written, but an IPv4 address in IPv6 form (`::ffff:a.b.c.d`) as plain IPv4. */
export function plainAddress(address: string): string {
  return address.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, "$1");
}

/**
 * The local and remote addresses of `connection` (an IPv4 address in IPv6
 * form, `::ffff:a.b.c.d`, is given as plain IPv4). No connection means a call
 * from this very process: 127.0.0.1 both.
 */
export function connectionAddresses(connection: Ice.Connection | null | undefined): { local: string; remote: string } {
  // A connection's info may wrap the transport's (ws over tcp, ssl): the addresses are in the IP one.
  let info: Ice.ConnectionInfo | null = connection?.getInfo() ?? null;
  while (info && !(info instanceof Ice.IPConnectionInfo)) info = info.underlying;
  if (!info) return { local: "127.0.0.1", remote: "127.0.0.1" };
  return { local: plainAddress(info.localAddress), remote: plainAddress(info.remoteAddress) };
}
