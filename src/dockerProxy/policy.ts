/**
 * What the Docker socket proxy lets through to the engine: the few requests the control plane needs to run
 * customers' containers hardened, and nothing else (the raw socket is root on the host). Pure: decide() judges a
 * request by itself; scopeCheck() says what must still be confirmed against the engine with the proxy's scope (the
 * target container's label, the networks a container joins) so a client cannot act on containers it did not make.
 *
 * Bodies are read as the engine reads them (Go's encoding/json): field names match ignoring case, so every field is
 * looked up so, and an object holding two keys that fold alike is refused (see strictJson.ts for the raw text).
 */
import { isLoopbackAddress } from './addresses.ts';
import { foldKey } from './strictJson.ts';

export interface DockerRequest {
  method: string;
  /** As sent: maybe an API version prefix (/v1.41/…) and a query string. */
  path: string;
  /** The parsed JSON body; undefined when there was none. */
  body?: unknown;
}
export type Decision = { allow: true } | { allow: false; reason: string };
export interface PolicyOptions {
  /** The label key every container and network made through the proxy carries; its value is the scope. */
  label: string;
  /**
   * Lets a container publish a port on an address other than the host's loopback. Off by default: a port published
   * on any other address (every interface, the bridge gateway, the host's own) is reachable from every container.
   */
  allowPublicPorts?: boolean;
}

/** Container and network names and ids, as the engine accepts them (no slash, no `..` on its own). */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
/** Image references: a repository path with slashes, a tag, a digest. */
const IMAGE = /^[A-Za-z0-9][A-Za-z0-9_.\/:@-]*$/;
/** Below 1.24 the engine applies a HostConfig sent with `start`, which would bypass the create checks. */
const OLDEST_API = { major: 1, minor: 24 };
/** Network modes that name no network of the engine's users. */
const BUILTIN_NETWORKS = new Set(['', 'default', 'bridge', 'none']);
/** Network modes of the engine's default bridge, which lets its containers reach each other. */
const DEFAULT_BRIDGE = new Set(['', 'default', 'bridge']);

/**
 * The fields of container.Config, HostConfig and NetworkingConfig: a create body holds nothing else but the query's
 * name and platform, which dockerode repeats in the body and the engine ignores there.
 */
const CREATE_FIELDS = [
  'name', 'platform',
  'Hostname', 'Domainname', 'User', 'AttachStdin', 'AttachStdout', 'AttachStderr', 'ExposedPorts', 'Tty', 'OpenStdin',
  'StdinOnce', 'Env', 'Cmd', 'Healthcheck', 'ArgsEscaped', 'Image', 'Volumes', 'WorkingDir', 'Entrypoint',
  'NetworkDisabled', 'MacAddress', 'OnBuild', 'Labels', 'StopSignal', 'StopTimeout', 'Shell', 'HostConfig', 'NetworkingConfig',
];
/**
 * HostConfig fields that may only be absent or empty: each gives a container something of the host or of another
 * (Capabilities, on a 19.03 engine, replaces the whole set and CapDrop with it; GroupAdd adds the host's groups;
 * Sysctls tune the kernel).
 */
const HOST_CONFIG_EMPTY = [
  'CapAdd', 'Capabilities', 'Binds', 'Devices', 'DeviceRequests', 'DeviceCgroupRules', 'VolumesFrom', 'VolumeDriver',
  'Links', 'CgroupParent', 'Cgroup', 'Sysctls', 'GroupAdd',
];
/**
 * HostConfig switches that must be off: all the host's powers; an OOM kill that never comes (the host's processes
 * die instead); every exposed port published on every interface.
 */
const HOST_CONFIG_FALSE = ['Privileged', 'OomKillDisable', 'PublishAllPorts'];
/** HostConfig fields that replace the engine's defaults when given at all: an empty list unmasks /proc paths. */
const HOST_CONFIG_ABSENT = ['MaskedPaths', 'ReadonlyPaths'];
/** Namespaces that must not be the host's nor (where the engine allows it) another container's. */
const NAMESPACE_MODES = ['NetworkMode', 'PidMode', 'IpcMode', 'UTSMode', 'UsernsMode', 'CgroupnsMode'];
/** The engine's own runtime: another (a VM runtime, a debugging shim) is configured on the host, outside this policy. */
const RUNTIMES = new Set(['', 'runc']);
const LOG_DRIVERS = new Set(['', 'json-file', 'local']);
/** The limits an update may change: each must stay above 0 (0 or -1 lifts it, or falls back to the engine's default). */
const UPDATE_LIMITS = ['Memory', 'MemorySwap', 'NanoCpus', 'PidsLimit', 'CpuQuota', 'CpuPeriod'];
const UPDATE_FIELDS = [...UPDATE_LIMITS, 'RestartPolicy'];
const NETWORK_FIELDS = ['Name', 'CheckDuplicate', 'Driver', 'Internal', 'Attachable', 'Ingress', 'ConfigOnly', 'ConfigFrom', 'EnableIPv6', 'IPAM', 'Options', 'Labels'];
const NETWORK_OPTIONS = ['com.docker.network.bridge.enable_icc', 'com.docker.network.bridge.enable_ip_masquerade', 'com.docker.network.driver.mtu'];
const CONTAINER_ACTIONS = new Set(['start', 'stop', 'restart', 'kill', 'wait']);

class Refused extends Error {}

function refuse(reason: string): never {
  throw new Refused(reason);
}

type Route =
  | { kind: 'plain' }
  | { kind: 'listing' }
  | { kind: 'create' }
  | { kind: 'network-create' }
  /** action: the path's last segment (json, logs, start…), empty for DELETE. */
  | { kind: 'container'; id: string; action: string };

interface Target {
  /** `/v1.41` or empty. */
  version: string;
  segments: string[];
  search: string;
}

export function decide(request: DockerRequest, options: PolicyOptions): Decision {
  return judged<Decision>(
    () => {
      checkBody(request, routeOf(request), options);
      return { allow: true };
    },
    (reason) => ({ allow: false, reason }),
  );
}

/** What `judge` answers, or what `refused` makes of the reason it refused with. */
function judged<T>(judge: () => T, refused: (reason: string) => T): T {
  try {
    return judge();
  } catch (err) {
    if (err instanceof Refused) return refused(err.message);
    throw err;
  }
}

/** What the proxy must confirm against the engine before it forwards a request decide() allowed. */
export type ScopeCheck =
  /** Nothing: forward to this path (a listing's carries the scope's label filter). */
  | { kind: 'forward'; path: string }
  /** The container must carry label=scope; forward to pathFor(its full id), so a name cannot be swapped meanwhile. */
  | { kind: 'container'; id: string; pathFor(fullId: string): string }
  /** The body is labelled with the scope; each network named must carry label=scope too. */
  | { kind: 'networks'; names: string[] }
  | { kind: 'refuse'; reason: string };

export function scopeCheck(request: DockerRequest, options: PolicyOptions & { scope: string }): ScopeCheck {
  return judged<ScopeCheck>(
    () => scopeCheckOf(request, options),
    (reason) => ({ kind: 'refuse', reason }),
  );
}

function scopeCheckOf(request: DockerRequest, options: PolicyOptions & { scope: string }): ScopeCheck {
  const route = routeOf(request);
  const target = parseTarget(request.path);
  switch (route.kind) {
    case 'plain':
      return { kind: 'forward', path: request.path };
    case 'listing':
      return { kind: 'forward', path: scopedListingPath(target, options.label, options.scope) };
    case 'container': {
      const prefix = `${target.version}/containers/`;
      const rest = `${route.action ? `/${route.action}` : ''}${target.search}`;
      return { kind: 'container', id: route.id, pathFor: (fullId) => `${prefix}${fullId}${rest}` };
    }
    case 'create':
    case 'network-create': {
      const body = requireObject(request.body, 'the body');
      if (labelValue(body, options.label) !== options.scope) refuse(`Labels["${options.label}"] is not this proxy's scope`);
      return { kind: 'networks', names: route.kind === 'create' ? namedNetworks(body) : [] };
    }
  }
}

/** The value of the label `label` in a parsed body's Labels (undefined when absent). */
function labelValue(body: Record<string, unknown>, label: string): unknown {
  return asObject(field(body, 'Labels', ''), 'Labels')?.[label];
}

function parseTarget(path: string): Target {
  if (!path.startsWith('/')) refuse(`the path "${path}" does not start with /`);
  const queryAt = path.indexOf('?');
  const pathname = queryAt < 0 ? path : path.slice(0, queryAt);
  const search = queryAt < 0 ? '' : path.slice(queryAt);
  // The engine decodes %2F and %2E: names must arrive as they are, never encoded.
  if (pathname.includes('%')) refuse(`percent-encoded characters in the path "${pathname}"`);
  if (pathname.includes('..')) refuse(`".." in the path "${pathname}"`);
  const segments = pathname.slice(1).split('/');
  if (segments.some((s) => s === '')) refuse(`an empty segment in the path "${pathname}"`);
  let version = '';
  const versioned = /^v(\d+)\.(\d+)$/.exec(segments[0] ?? '');
  if (versioned) {
    const [major, minor] = [Number(versioned[1]), Number(versioned[2])];
    if (major < OLDEST_API.major || (major === OLDEST_API.major && minor < OLDEST_API.minor)) {
      refuse(`API version ${segments[0]} is older than v${OLDEST_API.major}.${OLDEST_API.minor}`);
    }
    version = `/${segments.shift()}`;
  }
  return { version, segments, search };
}

function routeOf(request: DockerRequest): Route {
  const { method } = request;
  const { segments, search } = parseTarget(request.path);
  const endpoint = `${method} /${segments.join('/')}`;
  const [first, second, third, ...more] = segments;
  const only = (...methods: string[]): void => {
    if (!methods.includes(method)) refuse(`${endpoint} is not allowed`);
  };
  if (first === '_ping' && second === undefined) {
    only('GET', 'HEAD');
    return { kind: 'plain' };
  }
  if (first === 'version' && second === undefined) {
    only('GET');
    return { kind: 'plain' };
  }
  if (first === 'networks' && second !== undefined && third === undefined) {
    if (second === 'create' && method === 'POST') return { kind: 'network-create' };
    only('GET');
    if (!NAME.test(second)) refuse(`the network name "${second}" is not a valid name`);
    return { kind: 'plain' };
  }
  if (first === 'images' && segments.length >= 3 && segments[segments.length - 1] === 'json') {
    only('GET');
    const image = segments.slice(1, -1).join('/');
    if (!IMAGE.test(image)) refuse(`the image name "${image}" is not a valid name`);
    return { kind: 'plain' };
  }
  if (first === 'containers' && second !== undefined && more.length === 0) {
    if (second === 'json' && third === undefined) {
      only('GET');
      return { kind: 'listing' };
    }
    if (second === 'create' && third === undefined) {
      only('POST');
      return { kind: 'create' };
    }
    if (!NAME.test(second)) refuse(`the container name "${second}" is not a valid name`);
    if (third === undefined) {
      only('DELETE');
      const unknown = [...new URLSearchParams(search).keys()].filter((k) => k !== 'force' && k !== 'v');
      if (unknown.length > 0) refuse(`the query parameter "${unknown[0]}" of ${endpoint} is not allowed`);
      return { kind: 'container', id: second, action: '' };
    }
    if (third === 'json' || third === 'logs') {
      only('GET');
      return { kind: 'container', id: second, action: third };
    }
    if (CONTAINER_ACTIONS.has(third) || third === 'update') {
      only('POST');
      return { kind: 'container', id: second, action: third };
    }
  }
  refuse(`${endpoint} is not allowed`);
}

function checkBody(request: DockerRequest, route: Route, options: PolicyOptions): void {
  const { body } = request;
  switch (route.kind) {
    case 'create':
      return checkCreate(requireObject(body, 'the body'), options);
    case 'network-create':
      return checkNetworkCreate(requireObject(body, 'the body'), options.label);
    case 'container':
      if (route.action === 'update') return checkUpdate(requireObject(body, 'the body'));
      // dockerode repeats a call's options (t, signal) as a JSON body, which the engine ignores from v1.24 on.
      if (request.method === 'POST' && body !== undefined) {
        const options = requireObject(body, 'the body');
        const nested = Object.keys(options).find((k) => options[k] !== null && typeof options[k] === 'object');
        if (nested !== undefined) refuse(`the body of ${request.method} ${route.action} may only hold plain options (not "${nested}")`);
        return;
      }
      break;
  }
  if (body !== undefined) refuse(`${request.method} /${parseTarget(request.path).segments.join('/')} takes no body`);
}

function checkCreate(body: Record<string, unknown>, options: PolicyOptions): void {
  const unknown = Object.keys(body).filter((k) => !CREATE_FIELDS.some((f) => foldKey(f) === foldKey(k)));
  if (unknown.length > 0) refuse(`the field "${unknown[0]}" is not allowed in a container's create body`);
  requireLabel(body, options.label);
  const user = field(body, 'User', '');
  if (typeof user !== 'string' || user === '') refuse('User must be set (a non-root user)');
  const uid = user.split(':')[0]!;
  if (uid === 'root' || (/^\d+$/.test(uid) && Number(uid) === 0)) refuse(`User "${user}" is root`);
  const volumes = asObject(field(body, 'Volumes', ''), 'Volumes');
  if (volumes && Object.keys(volumes).length > 0) refuse('Volumes must be empty');

  checkHostConfig(requireObject(field(body, 'HostConfig', ''), 'HostConfig'), options);
  checkNetworks(body);
}

function checkHostConfig(host: Record<string, unknown>, options: PolicyOptions): void {
  const get = (name: string): unknown => field(host, name, 'HostConfig.');
  for (const name of HOST_CONFIG_FALSE) {
    const value = get(name);
    if (value !== undefined && value !== null && value !== false) refuse(`HostConfig.${name} must be false`);
  }
  if (!stringList(get('CapDrop'), 'HostConfig.CapDrop').some((c) => c.toUpperCase() === 'ALL')) refuse('HostConfig.CapDrop must contain ALL');
  for (const name of HOST_CONFIG_EMPTY) {
    if (!isEmpty(get(name))) refuse(`HostConfig.${name} must be empty`);
  }
  for (const name of HOST_CONFIG_ABSENT) {
    if (get(name) !== undefined && get(name) !== null) refuse(`HostConfig.${name} must be absent (the engine's defaults)`);
  }
  const securityOpt = stringList(get('SecurityOpt'), 'HostConfig.SecurityOpt');
  const noNewPrivileges = /^no-new-privileges([:=]true)?$/;
  if (!securityOpt.some((o) => noNewPrivileges.test(o))) refuse('HostConfig.SecurityOpt must contain no-new-privileges:true');
  const other = securityOpt.find((o) => !noNewPrivileges.test(o));
  if (other !== undefined) refuse(`HostConfig.SecurityOpt may hold only no-new-privileges (not "${other}")`);
  if (get('ReadonlyRootfs') !== true) refuse('HostConfig.ReadonlyRootfs must be true');
  const mounts = get('Mounts');
  if (mounts !== undefined && mounts !== null) {
    if (!Array.isArray(mounts)) refuse('HostConfig.Mounts must be a list');
    for (const mount of mounts) {
      if (field(requireObject(mount, 'HostConfig.Mounts[]'), 'Type', 'HostConfig.Mounts[].') !== 'tmpfs') refuse('HostConfig.Mounts may hold only tmpfs mounts');
    }
  }
  for (const name of NAMESPACE_MODES) {
    const mode = get(name);
    if (mode === undefined || mode === null) continue;
    if (typeof mode !== 'string') refuse(`HostConfig.${name} must be a string`);
    if (mode === 'host' || mode.startsWith('container:')) refuse(`HostConfig.${name} "${mode}" shares a namespace of the host or another container`);
  }
  const runtime = get('Runtime') ?? '';
  if (typeof runtime !== 'string' || !RUNTIMES.has(runtime)) refuse(`HostConfig.Runtime may only be runc`);
  const oomScoreAdj = get('OomScoreAdj');
  // Below 0 the OOM killer picks the host's processes before this container's.
  if (oomScoreAdj !== undefined && oomScoreAdj !== null && !(typeof oomScoreAdj === 'number' && oomScoreAdj >= 0)) {
    refuse('HostConfig.OomScoreAdj must not be below 0');
  }
  if (!positive(get('PidsLimit'))) refuse('HostConfig.PidsLimit must be above 0');
  if (!positive(get('Memory'))) refuse('HostConfig.Memory must be above 0');
  const logConfig = asObject(get('LogConfig'), 'HostConfig.LogConfig');
  const logDriver = logConfig ? field(logConfig, 'Type', 'HostConfig.LogConfig.') ?? '' : '';
  if (typeof logDriver !== 'string' || !LOG_DRIVERS.has(logDriver)) refuse(`HostConfig.LogConfig.Type may only be json-file or local`);
  if (!options.allowPublicPorts) checkPortsOnLoopback(get('PortBindings'));
}

/** Every published port is on the host's loopback, the one host address no container reaches. */
function checkPortsOnLoopback(bindings: unknown): void {
  for (const [port, list] of Object.entries(asObject(bindings, 'HostConfig.PortBindings') ?? {})) {
    if (list === null) continue;
    if (!Array.isArray(list)) refuse(`HostConfig.PortBindings["${port}"] must be a list`);
    for (const binding of list) {
      const where = `HostConfig.PortBindings["${port}"][].`;
      const hostIp = field(requireObject(binding, where.slice(0, -1)), 'HostIp', where) ?? '';
      if (typeof hostIp !== 'string' || !isLoopbackAddress(hostIp)) {
        refuse(`${where}HostIp "${String(hostIp)}" is not a loopback address: a port published there is reachable from every container (DOCKER_PROXY_PUBLIC_PORTS allows it)`);
      }
    }
  }
}

/**
 * A container joins named networks only (the server confirms each is of the scope) or none: never the default
 * bridge, where containers reach each other.
 */
function checkNetworks(body: Record<string, unknown>): void {
  const host = requireObject(field(body, 'HostConfig', ''), 'HostConfig');
  const mode = field(host, 'NetworkMode', 'HostConfig.') ?? '';
  if (typeof mode !== 'string' || DEFAULT_BRIDGE.has(mode)) {
    refuse(`HostConfig.NetworkMode "${String(mode)}" is the default bridge, where containers reach each other: name a network of the scope`);
  }
  const builtin = endpointNames(body).find((name) => BUILTIN_NETWORKS.has(name) || name === 'host');
  if (builtin !== undefined) refuse(`NetworkingConfig.EndpointsConfig may only name networks of the scope (not "${builtin}")`);
  for (const network of namedNetworks(body)) {
    if (!NAME.test(network)) refuse(`the network name "${network}" is not a valid name`);
  }
}

/** The user-made networks a create body joins (its network mode and its endpoints), for their scope to be checked. */
function namedNetworks(body: Record<string, unknown>): string[] {
  const host = requireObject(field(body, 'HostConfig', ''), 'HostConfig');
  const mode = field(host, 'NetworkMode', 'HostConfig.');
  const names = [...(typeof mode === 'string' ? [mode] : []), ...endpointNames(body)];
  return [...new Set(names.filter((n) => !BUILTIN_NETWORKS.has(n)))];
}

/** The networks a create body's NetworkingConfig names an endpoint on. */
function endpointNames(body: Record<string, unknown>): string[] {
  const networking = asObject(field(body, 'NetworkingConfig', ''), 'NetworkingConfig');
  const endpoints = networking ? asObject(field(networking, 'EndpointsConfig', 'NetworkingConfig.'), 'NetworkingConfig.EndpointsConfig') : undefined;
  return Object.keys(endpoints ?? {});
}

function checkUpdate(body: Record<string, unknown>): void {
  for (const key of Object.keys(body)) {
    if (!UPDATE_FIELDS.some((f) => foldKey(f) === foldKey(key))) refuse(`the field "${key}" may not be changed by an update`);
  }
  for (const name of UPDATE_LIMITS) {
    const value = field(body, name, '');
    if (value !== undefined && value !== null && !positive(value)) refuse(`${name} must be above 0 (a limit cannot be lifted)`);
  }
}

function checkNetworkCreate(body: Record<string, unknown>, label: string): void {
  const unknown = Object.keys(body).filter((k) => !NETWORK_FIELDS.some((f) => foldKey(f) === foldKey(k)));
  if (unknown.length > 0) refuse(`the field "${unknown[0]}" is not allowed in a network's create body`);
  const driver = field(body, 'Driver', '');
  if (driver !== undefined && driver !== null && driver !== '' && driver !== 'bridge') refuse(`Driver "${String(driver)}" is not bridge`);
  for (const name of ['Ingress', 'ConfigOnly']) {
    const value = field(body, name, '');
    if (value !== undefined && value !== null && value !== false) refuse(`${name} must be false`);
  }
  if (!isEmpty(field(body, 'ConfigFrom', ''))) refuse('ConfigFrom must be empty');
  // Addresses are the engine's to pick from its pools: a subnet given here could shadow a route of the host's.
  const ipam = asObject(field(body, 'IPAM', ''), 'IPAM') ?? {};
  const ipamDriver = field(ipam, 'Driver', 'IPAM.');
  if (!isEmpty(ipamDriver) && ipamDriver !== 'default') refuse(`IPAM.Driver "${String(ipamDriver)}" is not default`);
  for (const name of ['Config', 'Options']) {
    if (!isEmpty(field(ipam, name, 'IPAM.'))) refuse(`IPAM.${name} must be empty (the engine picks the subnet)`);
  }
  const options = asObject(field(body, 'Options', ''), 'Options') ?? {};
  const option = Object.keys(options).find((k) => !NETWORK_OPTIONS.includes(k));
  if (option !== undefined) refuse(`the network option "${option}" is not allowed (Options)`);
  requireLabel(body, label);
}

function requireLabel(body: Record<string, unknown>, label: string): void {
  if (typeof labelValue(body, label) !== 'string') refuse(`Labels must contain the label "${label}"`);
}

/**
 * A field looked up as the engine does, ignoring case; refused when the object holds it under two spellings (one
 * would be checked here and the other applied there).
 */
function field(object: Record<string, unknown>, name: string, where: string): unknown {
  const keys = Object.keys(object).filter((k) => foldKey(k) === foldKey(name));
  if (keys.length > 1) refuse(`${where}${name} is given more than once (as ${keys.join(', ')})`);
  return keys.length === 1 ? object[keys[0]!] : undefined;
}

function asObject(value: unknown, where: string): Record<string, unknown> | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object' || Array.isArray(value)) refuse(`${where} must be an object`);
  return value as Record<string, unknown>;
}

function requireObject(value: unknown, where: string): Record<string, unknown> {
  return asObject(value, where) ?? refuse(`${where} must be a JSON object`);
}

function stringList(value: unknown, where: string): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) refuse(`${where} must be a list of strings`);
  return value as string[];
}

/** Absent, null, false, an empty string, list or object. */
function isEmpty(value: unknown): boolean {
  if (value === undefined || value === null || value === false || value === '') return true;
  if (Array.isArray(value)) return value.length === 0;
  return typeof value === 'object' && Object.keys(value).length === 0;
}

function positive(value: unknown): boolean {
  return typeof value === 'number' && Number.isFinite(value) && value > 0;
}

/**
 * A listing's path with a filter on label=scope added to what the client asked (the engine ANDs label filters, so
 * nothing outside the scope can be listed). Filters come in two shapes, `{"label":["a=b"]}` and
 * `{"label":{"a=b":true}}`: both are read, and all are written in the second (the engine reads one shape at a time).
 */
function scopedListingPath(target: Target, label: string, scope: string): string {
  const query = new URLSearchParams(target.search);
  const given = query.get('filters');
  let parsed: unknown;
  try {
    parsed = given ? JSON.parse(given) : {};
  } catch {
    refuse('the filters are not valid JSON');
  }
  const filters: Record<string, Record<string, boolean>> = {};
  for (const [name, values] of Object.entries(asObject(parsed, 'the filters') ?? {})) {
    filters[name] = Array.isArray(values)
      ? Object.fromEntries(values.map((v) => [String(v), true]))
      : { ...(asObject(values, `the filter "${name}"`) as Record<string, boolean> | undefined) };
  }
  filters.label = { ...filters.label, [`${label}=${scope}`]: true };
  query.set('filters', JSON.stringify(filters));
  return `${target.version}/${target.segments.join('/')}?${query.toString()}`;
}
