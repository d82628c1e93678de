import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import { SkiplockError } from '../errors.js';

/** The host names that reach only this machine: the dashboard binds to one of them unless it has a token. */
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

/** The shortest auth token accepted: a guessable one would make the token pointless. */
export const MIN_TOKEN_LENGTH = 16;

export function isLoopbackHost(host: string): boolean {
  return LOOPBACK.has(host.trim().toLowerCase());
}

/**
 * Refuses to expose the dashboard beyond this machine without an auth token, and refuses a
 * short token. Throws a SkiplockError whose message says what to do (the CLI: exit 2).
 */
export function checkDashboardExposure(host: string, authToken: string | undefined): void {
  if (authToken !== undefined) {
    if (authToken.length < MIN_TOKEN_LENGTH || /\s/.test(authToken)) {
      throw new SkiplockError(`dashboard auth token too short or with spaces: use at least ${MIN_TOKEN_LENGTH} characters without spaces (e.g. \`openssl rand -hex 24\`)`);
    }
    return;
  }
  if (!isLoopbackHost(host)) {
    throw new SkiplockError(
      `refusing to serve the dashboard on ${host} without an auth token: it would let anyone who reaches that address change jobs; give an auth token (--auth-token or SKIPLOCK_DASHBOARD_TOKEN) or bind to 127.0.0.1`,
    );
  }
}

/** Compares two secrets in constant time (whatever their lengths). */
export function secretsEqual(a: string, b: string): boolean {
  const da = createHash('sha256').update(a).digest();
  const db = createHash('sha256').update(b).digest();
  return timingSafeEqual(da, db) && a.length === b.length;
}

export function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (!out.has(name)) out.set(name, value);
  }
  return out;
}

/** Headers of every response: no script runs, nothing is framed, no referrer leaks ids. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cache-control': 'no-store',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

/**
 * Sessions, authentication and CSRF tokens of one dashboard process. A session is a random
 * id in an HttpOnly SameSite=Strict cookie; its CSRF token is an HMAC of the id under a secret
 * of this process (so a POST must come from a page this dashboard rendered for that cookie),
 * and, with an auth token, the login cookie is another HMAC of the id. Cookie names carry the
 * port: dashboards on other ports of the same host keep their own.
 */
export class Guard {
  private readonly secret: Buffer;
  readonly sessionCookie: string;
  readonly authCookie: string;

  constructor(
    private readonly authToken: string | undefined,
    port: number,
  ) {
    this.secret = randomBytes(32);
    this.sessionCookie = `skiplock_session_${port}`;
    this.authCookie = `skiplock_auth_${port}`;
  }

  get requiresAuth(): boolean {
    return this.authToken !== undefined;
  }

  newSessionId(): string {
    return randomBytes(18).toString('base64url');
  }

  /** The request's session id, when its cookie has a well-formed one. */
  sessionOf(req: http.IncomingMessage): string | undefined {
    const sid = parseCookies(req.headers.cookie).get(this.sessionCookie);
    return sid !== undefined && /^[A-Za-z0-9_-]{24}$/.test(sid) ? sid : undefined;
  }

  private mac(purpose: string, sid: string): string {
    return createHmac('sha256', this.secret).update(`${purpose}:${sid}`).digest('base64url');
  }

  csrfToken(sid: string): string {
    return this.mac('csrf', sid);
  }

  csrfValid(sid: string | undefined, token: string | undefined): boolean {
    return sid !== undefined && token !== undefined && secretsEqual(token, this.csrfToken(sid));
  }

  /** Whether the given text is the auth token (constant time). */
  tokenMatches(candidate: string): boolean {
    return this.authToken !== undefined && secretsEqual(candidate, this.authToken);
  }

  /** Authenticated: no token configured, `Authorization: Bearer <token>`, or the login cookie of the session. */
  authenticated(req: http.IncomingMessage, sid: string | undefined): boolean {
    if (this.authToken === undefined) return true;
    const header = req.headers.authorization;
    if (header !== undefined) {
      const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
      return match !== null && this.tokenMatches(match[1]!);
    }
    const cookie = parseCookies(req.headers.cookie).get(this.authCookie);
    return sid !== undefined && cookie !== undefined && secretsEqual(cookie, this.mac('auth', sid));
  }

  /** The Set-Cookie values of a session (and, after a login, of its authentication). */
  cookies(sid: string, loggedIn: boolean): string[] {
    const attributes = 'Path=/; HttpOnly; SameSite=Strict';
    const out = [`${this.sessionCookie}=${sid}; ${attributes}`];
    if (loggedIn) out.push(`${this.authCookie}=${this.mac('auth', sid)}; ${attributes}`);
    return out;
  }
}

/**
 * Without an auth token the dashboard answers only to loopback host names: a page of another
 * site whose name was made to resolve to 127.0.0.1 (DNS rebinding) sends its own name as Host
 * and is refused, so it can neither read the pages nor get a CSRF token.
 */
export function hostAllowed(req: http.IncomingMessage, port: number, requiresAuth: boolean): boolean {
  if (requiresAuth) return true;
  const host = (req.headers.host ?? '').toLowerCase();
  const match = /^(\[[0-9a-f:]+\]|[^:]+)(?::(\d+))?$/.exec(host);
  if (match === null) return false;
  return isLoopbackHost(match[1]!) && (match[2] === undefined ? port === 80 : Number(match[2]) === port);
}

/**
 * A POST must come from this dashboard's own pages: an Origin header, when sent, names this
 * host and port, and a browser's Sec-Fetch-Site, when sent, says same-origin. A page under
 * `Referrer-Policy: no-referrer` (ours) makes Chromium send `Origin: null` with its own
 * forms; that is accepted only with Sec-Fetch-Site: same-origin, which pages cannot forge.
 */
export function originAllowed(req: http.IncomingMessage): boolean {
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin') return false;
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  if (origin === 'null') return site === 'same-origin';
  try {
    return new URL(origin).host === (req.headers.host ?? '').toLowerCase();
  } catch {
    return false;
  }
}
