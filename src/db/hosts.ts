import { SkiplockError } from '../errors.js';

/**
 * Multi-host connection strings (standby failover). node-postgres connects to one host only;
 * libpq takes a list and a `target_session_attrs`:
 *
 *   postgres://user@hostA:5432,hostB:5433/db?target_session_attrs=read-write
 *   host=hostA,hostB port=5432,5433 user=user dbname=db target_session_attrs=read-write
 *
 * This file parses them (pure). Such a string gets a HostResolver (resolver.ts; one per
 * string and process, shared by its pools and LISTEN connections) that knows the last host
 * found fit: writable for `read-write` and `primary`, reachable for `any` (libpq's default).
 * New connections go there. A connection that cannot connect, is lost (terminated by the
 * server, admin shutdown, a broken socket) or runs into a read-only error (SQLSTATE 25006)
 * makes the resolver forget that host; the next connection probes the hosts again in order
 * (a short connect, `SELECT pg_is_in_recovery()`) and goes to the first fit one. So after a
 * failover, once a standby is promoted, every new connection of the pool and the listener's
 * reconnects find it by themselves. When none is fit, a connection fails with one line:
 * `cannot connect to any of hostA:5432, hostB:5433 (connection refused)`.
 *
 * A string with one host is not touched: pg parses it as always.
 */

export interface HostAddress {
  readonly host: string;
  readonly port: number;
}

/** The values of libpq's target_session_attrs a queue can work with (it must write). */
export type TargetSessionAttrs = 'any' | 'read-write' | 'primary';
const TARGET_SESSION_ATTRS: readonly TargetSessionAttrs[] = ['any', 'read-write', 'primary'];

export interface HostList {
  readonly hosts: readonly HostAddress[];
  readonly targetSessionAttrs: TargetSessionAttrs;
  /** "hostA:5432, hostB:5433": for messages. */
  readonly label: string;
  /** The path of the string, for messages ("/db", or "" when none). */
  readonly database: string;
  /** The password of the string, if any: never to be printed. */
  readonly password: string | undefined;
  /** The same connection string with this one host (without target_session_attrs). */
  connectionStringFor(host: HostAddress): string;
}

const URL_FORM = /^(postgres(?:ql)?:\/\/)(?:([^@/?#]*)@)?([^/?#]*)(.*)$/is;

function defaultPort(): number {
  const port = Number(process.env.PGPORT);
  return Number.isInteger(port) && port > 0 && port < 65536 ? port : 5432;
}

function parsePort(text: string): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port < 1 || port > 65535) throw new SkiplockError(`invalid port "${text}" in the connection string`);
  return port;
}

function decode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** One "host[:port]" of a URL's host list ("[::1]:5432" for IPv6, "%2Ftmp" for a socket directory). */
function parseUrlHost(part: string): HostAddress {
  const v6 = /^\[([^\]]*)\](?::(.*))?$/.exec(part);
  if (v6) return { host: v6[1] ?? '', port: v6[2] ? parsePort(v6[2]) : defaultPort() };
  const colon = part.lastIndexOf(':');
  const host = decode(colon < 0 ? part : part.slice(0, colon));
  const port = colon < 0 || part.slice(colon + 1) === '' ? defaultPort() : parsePort(part.slice(colon + 1));
  return { host: host || 'localhost', port };
}

/** host:port, [v6]:port. */
export function hostLabel(h: HostAddress): string {
  return h.host.includes(':') ? `[${h.host}]:${h.port}` : `${h.host}:${h.port}`;
}

function urlHost(host: string): string {
  return host.includes(':') ? `[${host}]` : encodeURIComponent(host);
}

function targetSessionAttrs(value: string | null | undefined): TargetSessionAttrs {
  const attrs = (value ?? 'any').trim().toLowerCase();
  const known = TARGET_SESSION_ATTRS.find((a) => a === attrs);
  if (known === undefined) {
    throw new SkiplockError(`target_session_attrs=${attrs} is not supported: skiplock writes, so use read-write, primary or any`);
  }
  return known;
}

function hostList(
  hosts: HostAddress[],
  attrs: TargetSessionAttrs,
  database: string,
  password: string | undefined,
  forHost: (host: HostAddress) => string,
): HostList {
  return {
    hosts,
    targetSessionAttrs: attrs,
    label: hosts.map(hostLabel).join(', '),
    database,
    password,
    connectionStringFor: forHost,
  };
}

function parseUrlForm(connectionString: string): HostList | undefined {
  const match = URL_FORM.exec(connectionString);
  if (!match) return undefined;
  const [, scheme = '', userinfo, hostsPart = '', rest = ''] = match;
  if (!hostsPart.includes(',')) return undefined;
  const hosts = hostsPart.split(',').map(parseUrlHost);
  // The query without target_session_attrs (pg would only carry it along).
  const queryAt = rest.indexOf('?');
  const path = queryAt < 0 ? rest : rest.slice(0, queryAt);
  const params = new URLSearchParams(queryAt < 0 ? '' : rest.slice(queryAt + 1));
  const attrs = targetSessionAttrs(params.get('target_session_attrs'));
  params.delete('target_session_attrs');
  const query = params.toString();
  const auth = userinfo === undefined ? '' : `${userinfo}@`;
  const colon = userinfo?.indexOf(':') ?? -1;
  const password = userinfo !== undefined && colon >= 0 ? decode(userinfo.slice(colon + 1)) : undefined;
  return hostList(hosts, attrs, path.replace(/#.*$/, ''), password || undefined, (h) => `${scheme}${auth}${urlHost(h.host)}:${h.port}${path}${query ? `?${query}` : ''}`);
}

/** libpq's key=value form: values bare or in single quotes, with backslash escapes. */
function parseKeyValues(text: string): Map<string, string> | undefined {
  const out = new Map<string, string>();
  const token = /\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?:'((?:[^'\\]|\\.)*)'|((?:[^\s'\\]|\\.)*))/gy;
  let at = 0;
  while (at < text.length) {
    if (/^\s*$/.test(text.slice(at))) break;
    token.lastIndex = at;
    const m = token.exec(text);
    if (!m) return undefined;
    out.set((m[1] ?? '').toLowerCase(), (m[2] ?? m[3] ?? '').replace(/\\(.)/g, '$1'));
    at = token.lastIndex;
  }
  return out.size > 0 ? out : undefined;
}

function parseKeyValueForm(connectionString: string): HostList | undefined {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(connectionString)) return undefined;
  const values = parseKeyValues(connectionString);
  const hostValue = values?.get('host');
  if (values === undefined || hostValue === undefined || !hostValue.includes(',')) return undefined;
  const names = hostValue.split(',').map((h) => h.trim() || 'localhost');
  const ports = (values.get('port') ?? '').split(',').map((p) => p.trim());
  if (ports.length !== 1 && ports.length !== names.length) {
    throw new SkiplockError(`the connection string names ${names.length} hosts but ${ports.length} ports`);
  }
  const hosts = names.map((host, i) => {
    const port = ports.length === 1 ? ports[0] : ports[i];
    return { host, port: port ? parsePort(port) : defaultPort() };
  });
  const attrs = targetSessionAttrs(values.get('target_session_attrs'));
  const user = values.get('user');
  const password = values.get('password');
  const database = values.get('dbname');
  const params = new URLSearchParams();
  for (const [key, value] of values) {
    if (!['host', 'port', 'user', 'password', 'dbname', 'target_session_attrs'].includes(key)) params.set(key, value);
  }
  const query = params.toString();
  const auth = user === undefined ? '' : `${encodeURIComponent(user)}${password ? `:${encodeURIComponent(password)}` : ''}@`;
  const path = database === undefined ? '' : `/${encodeURIComponent(database)}`;
  return hostList(hosts, attrs, path, password || undefined, (h) => `postgres://${auth}${urlHost(h.host)}:${h.port}${path}${query ? `?${query}` : ''}`);
}

/**
 * The hosts of a multi-host connection string (URL or key=value form), or undefined for a
 * string with one host (or none). Throws a SkiplockError for a malformed list (a bad port,
 * ports that do not match the hosts, an unsupported target_session_attrs).
 */
export function parseHostList(connectionString: string | undefined): HostList | undefined {
  if (connectionString === undefined || !connectionString.includes(',')) return undefined;
  return parseUrlForm(connectionString.trim()) ?? parseKeyValueForm(connectionString.trim());
}

/** "hostA:5432, hostB:5433/db" for a multi-host string; undefined otherwise (never throws). */
export function describeHosts(connectionString: string | undefined): string | undefined {
  try {
    const list = parseHostList(connectionString);
    return list && `${list.label}${list.database}`;
  } catch {
    return undefined;
  }
}

/** The password of a multi-host string (undefined for other strings): what never to print. */
export function multiHostPassword(connectionString: string | undefined): string | undefined {
  try {
    return parseHostList(connectionString)?.password;
  } catch {
    return undefined;
  }
}
