/** The Docker socket proxy's settings from its environment, every problem named at once (as the control plane's). */
import { ConfigError } from '../config.ts';
import { isLoopbackAddress } from './addresses.ts';
import type { DockerProxyOptions } from './server.ts';
import { DOCKER_LABELS } from '../providers/compute/dockerLabels.ts';

/** The label the control plane marks its containers and networks with; the proxy's scope is its value. */
export const SCOPE_LABEL = DOCKER_LABELS.scope;
const SCOPE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const TRUE = ['true', '1', 'yes'];
const FALSE = ['false', '0', 'no'];

export function loadDockerProxyConfig(env: Record<string, string | undefined>): DockerProxyOptions {
  const problems: string[] = [];
  const read = (name: string): string | undefined => env[name]?.trim() || undefined;

  const upstreamSocket = read('DOCKER_PROXY_SOCKET') ?? '/var/run/docker.sock';
  if (!upstreamSocket.startsWith('/')) problems.push(`DOCKER_PROXY_SOCKET must be an absolute path (got "${upstreamSocket}")`);
  const host = read('DOCKER_PROXY_HOST') ?? '127.0.0.1';
  const portText = read('DOCKER_PROXY_PORT') ?? '2375';
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) problems.push(`DOCKER_PROXY_PORT must be an integer between 1 and 65535 (got "${portText}")`);
  const scope = read('DOCKER_PROXY_SCOPE');
  if (scope === undefined) problems.push(`DOCKER_PROXY_SCOPE is required (the value of the ${SCOPE_LABEL} label this proxy acts within)`);
  else if (!SCOPE.test(scope)) problems.push(`DOCKER_PROXY_SCOPE must be letters, digits, _ . - (got "${scope}")`);
  const token = read('DOCKER_PROXY_TOKEN');
  // Loopback is out of every container's reach (they reach the host through its bridge gateway); any other address is not.
  if (token === undefined && host.toLowerCase() !== 'localhost' && !isLoopbackAddress(host)) {
    problems.push(`DOCKER_PROXY_HOST "${host}" is not a loopback address and DOCKER_PROXY_TOKEN is not set: any container that reaches this address could drive the engine`);
  }
  const publicPorts = (read('DOCKER_PROXY_PUBLIC_PORTS') ?? 'false').toLowerCase();
  if (![...TRUE, ...FALSE].includes(publicPorts)) problems.push(`DOCKER_PROXY_PUBLIC_PORTS must be true or false (got "${publicPorts}")`);

  if (problems.length > 0) throw new ConfigError(problems);
  return {
    upstreamSocket,
    host,
    port,
    label: SCOPE_LABEL,
    scope: scope!,
    allowPublicPorts: TRUE.includes(publicPorts),
    ...(token === undefined ? {} : { token }),
  };
}
