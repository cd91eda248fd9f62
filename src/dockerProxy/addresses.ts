/** IP addresses as the proxy judges them: written as both Node and the engine (Go's net.ParseIP) read them. */
import { isIPv4, isIPv6 } from 'node:net';

/**
 * An IP literal of the host's loopback, 127.0.0.0/8 or ::1 in any spelling. A name, a zone (fe80::1%eth0) or a form
 * Node does not take (leading zeros) is not one: the engine binds a host address it cannot parse on every interface.
 */
export function isLoopbackAddress(address: string): boolean {
  if (isIPv4(address)) return address.startsWith('127.');
  if (!isIPv6(address) || address.includes('%')) return false;
  return new URL(`http://[${address}]`).hostname === '[::1]';
}
