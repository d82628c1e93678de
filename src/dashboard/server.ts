import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type pg from 'pg';
import { Jobs } from '../admin/jobs.js';
import { Queues } from '../admin/queues.js';
import { DEFAULT_SCHEMA, checkInteger, validateSchema } from '../config.js';
import { createPool, describeDbError } from '../db/pool.js';
import { SkiplockError, errorMessage, redactSecrets } from '../errors.js';
import { type Logger, silentLogger } from '../observability/logger.js';
import { Producer } from '../producer/producer.js';
import { act } from './actions.js';
import { STYLESHEET } from './assets.js';
import { HttpError } from './filter.js';
import type { View } from './layout.js';
import { errorPage, loginPage } from './pages.js';
import { type Api, type Outcome, page } from './routes.js';
import { Guard, SECURITY_HEADERS, checkDashboardExposure, hostAllowed, originAllowed } from './security.js';

export { checkDashboardExposure } from './security.js';

export const DEFAULT_DASHBOARD_PORT = 9470;

export interface DashboardOptions {
  /** Use this pool (it is not closed by close()); else one of 4 connections is opened. */
  pool?: pg.Pool;
  /** Without a pool: where to connect (absent: pg reads the PG* variables). */
  connectionString?: string;
  /** Without a pool: false runs statements unnamed, for PgBouncer in transaction mode (default true). */
  preparedStatements?: boolean;
  /** Schema of the jobs table (default "skiplock"). */
  schema?: string;
  /** Address to bind (default 127.0.0.1); any other than 127.0.0.1, localhost or ::1 needs authToken. */
  host?: string;
  /** Port (default 9470; 0: any free port, see Dashboard.port). */
  port?: number;
  /** Every request must carry it: `Authorization: Bearer <token>`, or the cookie of a login at /login. At least 16 characters. */
  authToken?: string;
  /** Show no action buttons and refuse every POST (403). Default false. */
  readOnly?: boolean;
  /** Where actions (`dashboard action`), refusals and failures are logged (default: nowhere). */
  logger?: Logger;
}

export interface Dashboard {
  /** e.g. http://127.0.0.1:9470/ */
  readonly url: string;
  readonly port: number;
  /** Stops serving (open connections are closed) and closes the pool if the dashboard opened it. */
  close(): Promise<void>;
}

/** The largest form body accepted. */
const MAX_FORM_BYTES = 64 * 1024;

/** A local path to go back to after a login ("/" for anything else). */
function localNext(text: string | null): string {
  return text !== null && /^\/(?![/\\])[^\s\\]*$/.test(text) ? text : '/';
}

async function readForm(req: http.IncomingMessage): Promise<URLSearchParams> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') throw new HttpError(415, 'expected a form (application/x-www-form-urlencoded)');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) throw new HttpError(413, `form too large (more than ${MAX_FORM_BYTES} bytes)`);
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

/** The request pipeline: host check, session, authentication, origin, read-only, CSRF, then the page or action. */
class DashboardApp {
  constructor(
    private readonly api: Api,
    private readonly guard: Guard,
    private readonly settings: { readonly schema: string; readonly readOnly: boolean; readonly port: number; readonly logger: Logger },
  ) {}

  handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.serve(req, res).catch((err: unknown) => this.fail(req, res, err));
  }

  private view(csrf: string, url: URL): View {
    const flash = url.searchParams.get('flash');
    return {
      csrf,
      readOnly: this.settings.readOnly,
      schema: this.settings.schema,
      flash: flash === null || flash === '' ? undefined : { text: flash.slice(0, 500), error: url.searchParams.get('flash_error') === '1' },
      now: Date.now(),
    };
  }

  private async serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const url = new URL(req.url ?? '/', 'http://dashboard.invalid');
    const path = url.pathname;
    const bare = { ...this.view('', url), schema: '' };
    if (!hostAllowed(req, this.settings.port, this.guard.requiresAuth)) {
      return this.refuse(req, res, bare, 403, 'host', `unexpected Host header ${JSON.stringify(req.headers.host ?? '')}: open the dashboard at 127.0.0.1 or localhost`);
    }
    const isGet = method === 'GET' || method === 'HEAD';
    if (!isGet && method !== 'POST') return send(res, 405, errorPage(bare, 405, `${method} is not served here`).text, { allow: 'GET, HEAD, POST' });
    if (isGet && path === '/assets/style.css') return send(res, 200, STYLESHEET, { 'content-type': 'text/css; charset=utf-8' });
    if (isGet && path === '/favicon.ico') return send(res, 204, '', {});

    const known = this.guard.sessionOf(req);
    const sid = known ?? this.guard.newSessionId();
    const cookies = known === undefined ? this.guard.cookies(sid, false) : [];
    const view = this.view(this.guard.csrfToken(sid), url);

    if (path === '/login') return this.login(req, res, { ...view, schema: '' }, known, url, cookies);
    if (!this.guard.authenticated(req, known)) {
      const next = isGet ? `${path}${url.search}` : '/';
      return send(res, 401, loginPage({ ...view, schema: '' }, next, false).text, { 'set-cookie': cookies, 'www-authenticate': 'Bearer realm="skiplock dashboard"' });
    }
    if (method === 'POST') {
      if (!originAllowed(req)) return this.refuse(req, res, view, 403, 'origin', `cross-origin POST refused (Origin ${req.headers.origin ?? ''})`);
      if (this.settings.readOnly) return this.refuse(req, res, view, 403, 'read-only', 'read-only dashboard: actions are off');
      const form = await readForm(req);
      if (!this.guard.csrfValid(known, form.get('_csrf') ?? undefined)) {
        return this.refuse(req, res, view, 403, 'csrf', 'missing or invalid CSRF token: reload the page and try again');
      }
      const outcome = await act(this.api, this.settings.logger, { remote: req.socket.remoteAddress }, path, form);
      return finish(res, outcome ?? { status: 404, page: errorPage(view, 404, `no action at ${path}`) }, cookies);
    }
    const outcome = await page(this.api, view, path, url.searchParams);
    return finish(res, outcome ?? { status: 404, page: errorPage(view, 404, `no page at ${path}`) }, cookies);
  }

  private async login(req: http.IncomingMessage, res: http.ServerResponse, view: View, known: string | undefined, url: URL, cookies: string[]): Promise<void> {
    if (!this.guard.requiresAuth) return finish(res, { redirect: '/' }, cookies);
    if (req.method !== 'POST') {
      const next = localNext(url.searchParams.get('next'));
      if (this.guard.authenticated(req, known)) return finish(res, { redirect: next }, cookies);
      return finish(res, { status: 200, page: loginPage(view, next, false) }, cookies);
    }
    if (!originAllowed(req)) return this.refuse(req, res, view, 403, 'origin', `cross-origin POST refused (Origin ${req.headers.origin ?? ''})`);
    const form = await readForm(req);
    if (!this.guard.csrfValid(known, form.get('_csrf') ?? undefined)) {
      return this.refuse(req, res, view, 403, 'csrf', 'missing or invalid CSRF token: reload the login page and try again');
    }
    const next = localNext(form.get('next'));
    if (!this.guard.tokenMatches(form.get('token') ?? '')) {
      this.settings.logger.warn({ reason: 'token', method: 'POST', path: '/login', remote: req.socket.remoteAddress }, 'dashboard request refused');
      return send(res, 401, loginPage(view, next, true).text, { 'set-cookie': cookies });
    }
    // A new session at login: a session id known before it (fixation) is not the one that is logged in.
    const fresh = this.guard.newSessionId();
    return finish(res, { redirect: next }, this.guard.cookies(fresh, true));
  }

  private refuse(req: http.IncomingMessage, res: http.ServerResponse, view: View, status: number, reason: string, message: string): void {
    this.settings.logger.warn({ reason, method: req.method, path: (req.url ?? '').split('?')[0], remote: req.socket.remoteAddress }, 'dashboard request refused');
    send(res, status, errorPage(view, status, message).text, {});
  }

  private fail(req: http.IncomingMessage, res: http.ServerResponse, err: unknown): void {
    let status = 500;
    let message: string;
    if (err instanceof HttpError) {
      status = err.status;
      message = err.message;
    } else if (err instanceof SkiplockError) {
      // The library's own refusals (no cause) are the request's fault; the rest came from the database.
      if (err.cause === undefined) status = 400;
      message = redactSecrets(err.message.split('\n')[0] ?? 'error');
    } else {
      message = "internal error: see the dashboard's log";
    }
    if (status >= 500) {
      this.settings.logger.error({ err: redactSecrets(errorMessage(err).split('\n')[0] ?? ''), method: req.method, path: (req.url ?? '').split('?')[0] }, 'dashboard request failed');
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const view: View = { csrf: '', readOnly: this.settings.readOnly, schema: this.settings.schema, flash: undefined, now: Date.now() };
    send(res, status, errorPage(view, status, message).text, status === 413 ? { connection: 'close' } : {});
  }
}

function send(res: http.ServerResponse, status: number, body: string, headers: Readonly<Record<string, string | string[]>>): void {
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'text/html; charset=utf-8', ...headers });
  res.end(body);
}

function finish(res: http.ServerResponse, outcome: Outcome, cookies: string[]): void {
  const headers: Record<string, string | string[]> = cookies.length > 0 ? { 'set-cookie': cookies } : {};
  if ('redirect' in outcome) return send(res, 303, '', { ...headers, location: outcome.redirect });
  return send(res, outcome.status, outcome.page.text, headers);
}

/**
 * Serves the web dashboard: queues, task statistics, workers, jobs (filter, page, detail with
 * attempt history and diagnosis), schedules, and the operator's actions (retry, cancel and
 * delete jobs one at a time or by filter; pause and resume queues and schedules). See the
 * README's "Dashboard" section for its security model. Throws a SkiplockError for a host
 * other than loopback without authToken, a short token, or a port that cannot be bound.
 */
export async function startDashboard(options: DashboardOptions = {}): Promise<Dashboard> {
  const host = options.host ?? '127.0.0.1';
  checkDashboardExposure(host, options.authToken);
  const port = checkInteger(options.port ?? DEFAULT_DASHBOARD_PORT, 'dashboard port', 0, 65535);
  const schema = validateSchema(options.schema ?? DEFAULT_SCHEMA);
  const logger = options.logger ?? silentLogger();
  const readOnly = options.readOnly ?? false;
  const { connectionString } = options;
  const ownsPool = options.pool === undefined;
  const pool =
    options.pool ??
    createPool({ connectionString, max: 4, applicationName: 'skiplock dashboard', preparedStatements: options.preparedStatements }, (err) =>
      logger.warn({ err: describeDbError(err, connectionString).message }, 'idle database connection failed'),
    );
  const api: Api = {
    jobs: new Jobs({ pool, schema, connectionString }),
    queues: new Queues({ pool, schema, connectionString }),
    producer: new Producer({ pool, schema, connectionString, coalesce: false }),
  };
  let app: DashboardApp | undefined;
  const server = http.createServer((req, res) => {
    if (app === undefined) res.writeHead(503, SECURITY_HEADERS).end();
    else app.handle(req, res);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    if (ownsPool) await pool.end().catch(() => undefined);
    throw new SkiplockError(`cannot serve the dashboard on ${host}:${port}: ${errorMessage(err)}`, { cause: err });
  }
  const bound = (server.address() as AddressInfo).port;
  app = new DashboardApp(api, new Guard(options.authToken, bound), { schema, readOnly, port: bound, logger });
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${bound}/`;
  logger.info({ url, readOnly, auth: options.authToken !== undefined }, 'dashboard started');
  let closing: Promise<void> | undefined;
  return {
    url,
    port: bound,
    close: () =>
      (closing ??= (async () => {
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        if (ownsPool) await pool.end();
      })()),
  };
}
