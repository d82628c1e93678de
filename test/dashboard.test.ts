// The web dashboard in a real headless browser (Debian's chromium through playwright-core):
// pages, actions by clicking, escaping of hostile job data, CSRF, Origin and Host checks,
// read-only mode, the auth token, and the CLI's refusals. Screenshots go to
// test-output/screenshots/ (with UPDATE_SCREENSHOTS=1, the overview and a job's page are copied to docs/).
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, type Page, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { html } from '../src/dashboard/html.js';
import { type Dashboard, Queues, type Worker, createLogger, startDashboard } from '../src/index.js';
import { ROOT, runCli, startCli } from './helpers/cli.js';
import { DATABASE_URL } from './helpers/db.js';
import { useTestSchema } from './helpers/setup.js';
import { waitFor } from './helpers/wait.js';

// Connection budget: the file's pool (4), two workers of concurrency 4 (8 + listener each).
const { db, producer, workers } = useTestSchema('dash', { max: 4 });
const S = `"${db.schema}"`;
const queues = new Queues({ pool: db.pool, schema: db.schema });
const XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">';
const CHROMIUM = '/usr/bin/chromium';
const SHOTS = join(ROOT, 'test-output', 'screenshots');
const TOKEN = 'test-token-0123456789abcdef';

const logLines: Array<Record<string, unknown>> = [];
const logger = createLogger('info', { write: (line: string) => void logLines.push(JSON.parse(line) as Record<string, unknown>) });

let dash: Dashboard;
let context: BrowserContext;
let page: Page;
let userDataDir: string;
const ids: { xss: string; bounce: string[]; reports: string[] } = { xss: '', bounce: [], reports: [] };

async function status(id: string): Promise<string | undefined> {
  return (await db.rows<{ status: string }>(`SELECT status FROM ${S}.jobs WHERE id = $1`, [id]))[0]?.status;
}

// Read from the table: Producer.listSchedules() and Queues.list() cannot share a connection
// (both prepare a statement named skiplock:<schema>:list; see src/dashboard/server.ts).
async function schedulePaused(name: string): Promise<boolean | undefined> {
  return (await db.rows<{ paused: boolean }>(`SELECT paused FROM ${S}.schedules WHERE name = $1`, [name]))[0]?.paused;
}

/** A session of a dashboard for Node's fetch: its cookie and the CSRF token of its pages. */
async function session(base: string, headers: Record<string, string> = {}): Promise<{ cookie: string; csrf: string }> {
  const res = await fetch(new URL('/', base), { headers });
  const cookie = res.headers.getSetCookie().map((c) => c.split(';')[0]!).join('; ');
  const body = await res.text();
  const csrf = /name="_csrf" value="([^"]+)"/.exec(body)?.[1] ?? '';
  return { cookie, csrf };
}

function post(base: string, path: string, form: Record<string, string>, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(new URL(path, base), {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form).toString(),
  });
}

/** A GET with a Host header of our choosing (fetch does not let one set it). */
function getWithHost(url: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get(url, { headers: { host } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on('error', reject);
  });
}

async function shot(name: string): Promise<string> {
  const path = join(SHOTS, `${name}.png`);
  await page.screenshot({ path });
  return path;
}

beforeAll(async () => {
  // Jobs in two queues, some of which fail for good (maxAttempts 1), one with hostile text.
  const worker: Worker = await workers.start(
    {
      'send-email': async (payload) => {
        const to = String((payload as { to?: unknown }).to);
        if (to.includes('bounce') || to.includes('<')) throw new Error(`SMTP 550 5.1.1 ${to}: mailbox unavailable`);
      },
      'render-report': async (payload) => {
        const p = payload as { template: string };
        if (p.template === 'q3') throw new Error('render failed: template "q3" not found');
      },
    },
    { concurrency: 4, queues: ['mail', 'reports'], pollIntervalMs: 100 },
  );
  const mail = (to: string, maxAttempts = 1) => ({ task: 'send-email', queue: 'mail', payload: { to, template: 'welcome' }, maxAttempts });
  const added = await producer.enqueueMany([
    ...['ana@example.com', 'bo@example.com', 'cy@example.com', 'di@example.com', 'ed@example.com'].map((to) => mail(to)),
    mail('bounce-1@example.com'),
    mail('bounce-2@example.com'),
    ...['q1', 'q2', 'q3', 'q3', 'q3'].map((template) => ({ task: 'render-report', queue: 'reports', payload: { template }, maxAttempts: 1 })),
  ]);
  ids.bounce = added.ids.slice(5, 7);
  ids.reports = added.ids.slice(7);
  ids.xss = (await producer.enqueue('send-email', { to: XSS, note: XSS }, { queue: 'mail', maxAttempts: 1 })).id;
  await waitFor(
    async () => (await db.rows<{ n: number }>(`SELECT count(*)::int AS n FROM ${S}.jobs WHERE status IN ('queued', 'running')`))[0]!.n === 0,
    15_000,
    'the first jobs to finish',
  );
  await worker.stop({ graceMs: 0 });
  // Jobs that wait (no worker serves mail now), a delayed one, a schedule, and a live worker elsewhere.
  await producer.enqueueMany([mail('fy@example.com', 5), mail('gu@example.com', 5)]);
  await producer.enqueue('send-email', { to: 'later@example.com' }, { queue: 'mail', delay: '1h' });
  await producer.schedule('nightly-report', '0 3 * * *', 'render-report', { template: 'daily' }, { timezone: 'Europe/Berlin', queue: 'reports' });
  await workers.start({ resize: async () => undefined }, { concurrency: 2, queues: ['thumbnails'] });

  dash = await startDashboard({ pool: db.pool, schema: db.schema, port: 0, logger });
  mkdirSync(SHOTS, { recursive: true });
  userDataDir = mkdtempSync(join(tmpdir(), 'skiplock-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 800 },
  });
  page = context.pages()[0] ?? (await context.newPage());
});

afterAll(async () => {
  await context?.close();
  await dash?.close();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
});

describe('dashboard in a browser', () => {
  it('overview: queues with their counts, task stats, workers; no script on the page', async () => {
    const response = await page.goto(dash.url);
    expect(response?.status()).toBe(200);
    const headers = response!.headers();
    expect(headers['content-security-policy']).toContain("default-src 'none'");
    expect(headers['content-security-policy']).toContain("frame-ancestors 'none'");
    expect(headers['x-content-type-options']).toBe('nosniff');
    expect(headers['referrer-policy']).toBe('no-referrer');
    const listed = await queues.list();
    for (const name of ['mail', 'reports']) {
      const q = listed.find((x) => x.name === name)!;
      const row = page.locator(`table[data-table=queues] tr[data-queue="${name}"]`);
      await expect.poll(() => row.locator('td').first().innerText()).toBe(name);
      const cells = await row.locator('td').allInnerTexts();
      expect(cells.slice(2, 8).map(Number)).toEqual([q.queued, q.scheduled, q.running, q.succeeded, q.failed, q.cancelled]);
    }
    expect(await page.locator('table[data-table=stats]').innerText()).toContain('render-report');
    expect(await page.locator('table[data-table=workers]').innerText()).toContain('alive');
    expect(await page.locator('script').count()).toBe(0);
    await shot('overview');
  });

  it('job list: filters by status with the form, pages with an "Older" link', async () => {
    await page.goto(new URL('/jobs', dash.url).href);
    await page.check('input[name=status][value=failed]');
    await page.click('form.filters button[type=submit]');
    await page.waitForURL(/status=failed/);
    const failed = await db.rows<{ id: string }>(`SELECT id FROM ${S}.jobs WHERE status = 'failed' ORDER BY id DESC`);
    const rows = page.locator('table[data-table=jobs] tbody tr');
    expect(await rows.count()).toBe(failed.length);
    expect(await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-job')))).toEqual(failed.map((r) => r.id));
    expect(new Set(await page.locator('table[data-table=jobs] tbody .badge').allInnerTexts())).toEqual(new Set(['failed']));
    await shot('jobs');
    // Keyset paging: 50 a page; a filter with more jobs has an "Older" link that continues below the last id.
    await producer.enqueueMany(Array.from({ length: 55 }, (_, i) => ({ task: 'bulk-filler', queue: 'filler', payload: { i } })));
    await page.goto(new URL('/jobs?queue=filler', dash.url).href);
    expect(await rows.count()).toBe(50);
    await page.click('a[data-link=older]');
    expect(await rows.count()).toBe(5);
    expect(page.url()).toMatch(/after=\d+/);
  });

  it('job detail: hostile payload and error text shown literally, nothing of it runs', async () => {
    const response = await page.goto(new URL(`/jobs/${ids.xss}`, dash.url).href);
    expect(response?.status()).toBe(200);
    const payload = await page.locator('pre[data-payload]').innerText();
    expect(payload).toContain(`"note": ${JSON.stringify(XSS)}`); // pretty-printed JSON, as text
    expect(payload).toContain('<script>window.__xss=1</script>');
    expect(await page.locator('pre[data-payload]').isVisible()).toBe(true);
    expect(await page.locator('pre[data-last-error]').innerText()).toContain(`SMTP 550 5.1.1 ${XSS}`);
    expect(await page.locator('table[data-table=attempts]').innerText()).toContain(XSS);
    expect(await page.evaluate(() => (globalThis as { __xss?: unknown }).__xss)).toBeUndefined();
    expect(await page.locator('img[src=x]').count()).toBe(0);
    expect(await page.locator('script').count()).toBe(0);
    expect(await page.locator('[data-why]').getAttribute('data-why')).toBe('failed');
    // A flash message in the query string is text too.
    await page.goto(new URL(`/?flash=${encodeURIComponent(XSS)}`, dash.url).href);
    expect(await page.locator('.flash').innerText()).toBe(XSS);
    expect(await page.evaluate(() => (globalThis as { __xss?: unknown }).__xss)).toBeUndefined();
    expect(await page.locator('img[src=x]').count()).toBe(0);
    // The page for the docs: an ordinary failed job.
    await page.goto(new URL(`/jobs/${ids.bounce[0]}`, dash.url).href);
    expect(await page.locator('table[data-table=attempts] tbody tr').count()).toBe(1);
    await shot('job');
  });

  it('retries a failed job by clicking Retry; the action is logged', async () => {
    const id = ids.bounce[1]!;
    await page.goto(new URL(`/jobs/${id}`, dash.url).href);
    expect(await page.locator('button[data-action=cancel]').count()).toBe(0); // a failed job cannot be cancelled
    await page.click('button[data-action=retry]');
    await page.waitForURL(new RegExp(`/jobs/${id}\\?flash=`));
    expect(await page.locator('.flash').innerText()).toBe(`job ${id} requeued (was failed)`);
    expect(await status(id)).toBe('queued');
    expect(logLines).toContainEqual(expect.objectContaining({ msg: 'dashboard action', action: 'retry', jobId: id, changed: 1, level: 30 }));
  });

  it('pauses a queue by clicking Pause', async () => {
    await page.goto(dash.url);
    await page.locator('tr[data-queue=reports] button[data-action=pause]').click();
    await page.waitForURL(/flash=/);
    expect(await page.locator('.flash').innerText()).toBe('queue reports paused');
    expect((await queues.list()).find((q) => q.name === 'reports')?.paused).toBe(true);
    expect(await page.locator('tr[data-queue=reports] button[data-action=resume]').count()).toBe(1);
  });

  it('retries every job of a filter after a confirmation page with the count', async () => {
    const failedReports = ids.reports.slice(2);
    await page.goto(new URL('/jobs?queue=reports&status=failed', dash.url).href);
    await page.click('a[data-bulk=retry]');
    expect(await page.locator('[data-count]').innerText()).toBe(String(failedReports.length));
    await page.click('button[data-action=confirm-retry]');
    await page.waitForURL(/\/jobs\?.*flash=/);
    expect(await page.locator('.flash').innerText()).toBe(`requeued ${failedReports.length} failed jobs of queue reports`);
    for (const id of failedReports) expect(await status(id)).toBe('queued');
    expect(logLines).toContainEqual(
      expect.objectContaining({ msg: 'dashboard action', action: 'retry', filter: { statuses: ['failed'], queue: 'reports' }, matched: 3, changed: 3 }),
    );
  });

  it('pauses and resumes a schedule', async () => {
    await page.goto(new URL('/schedules', dash.url).href);
    const row = page.locator('tr[data-schedule=nightly-report]');
    expect(await row.innerText()).toContain('Europe/Berlin');
    await row.locator('button[data-action=pause]').click();
    await page.waitForURL(/flash=/);
    expect(await schedulePaused('nightly-report')).toBe(true);
    await page.locator('tr[data-schedule=nightly-report] button[data-action=resume]').click();
    await page.waitForURL(/flash=/);
    expect(await schedulePaused('nightly-report')).toBe(false);
  });
});

describe('dashboard security', () => {
  it('refuses a POST without a valid CSRF token, from another origin, or for another Host', async () => {
    const id = ids.bounce[0]!;
    expect((await post(dash.url, `/jobs/${id}/retry`, {})).status).toBe(403); // no session, no token
    const s = await session(dash.url);
    expect((await post(dash.url, `/jobs/${id}/retry`, {}, { cookie: s.cookie })).status).toBe(403); // no token
    expect((await post(dash.url, `/jobs/${id}/retry`, { _csrf: `${s.csrf}x` }, { cookie: s.cookie })).status).toBe(403);
    const other = await session(dash.url); // another session's token
    expect((await post(dash.url, `/jobs/${id}/retry`, { _csrf: other.csrf }, { cookie: s.cookie })).status).toBe(403);
    expect((await post(dash.url, `/jobs/${id}/retry`, { _csrf: s.csrf }, { cookie: s.cookie, origin: 'http://evil.example' })).status).toBe(403);
    expect((await post(dash.url, `/jobs/${id}/retry`, { _csrf: s.csrf }, { cookie: s.cookie, origin: 'null', 'sec-fetch-site': 'cross-site' })).status).toBe(403);
    expect((await post(dash.url, `/jobs/${id}/retry`, { _csrf: s.csrf }, { cookie: s.cookie, 'sec-fetch-site': 'same-site' })).status).toBe(403);
    expect(await status(id)).toBe('failed');
    // The same request with its token and its own origin is done.
    const ok = await post(dash.url, `/jobs/${id}/retry`, { _csrf: s.csrf }, { cookie: s.cookie, origin: new URL(dash.url).origin });
    expect(ok.status).toBe(303);
    expect(await status(id)).toBe('queued');
    // DNS rebinding: another name that resolves here is refused without a token.
    expect(await getWithHost(dash.url, `evil.example:${dash.port}`)).toBe(403);
    expect(await getWithHost(dash.url, `localhost:${dash.port}`)).toBe(200);
    expect(logLines).toContainEqual(expect.objectContaining({ msg: 'dashboard request refused', reason: 'csrf' }));
    expect(logLines).toContainEqual(expect.objectContaining({ msg: 'dashboard request refused', reason: 'origin' }));
  });

  it('bad input is a 400 page with the message; a database error a 500 page with one line', async () => {
    for (const [path, code, text] of [
      ['/jobs/12abc', 400, 'invalid job id'],
      ['/jobs?status=done', 400, 'invalid status'],
      ['/jobs?older_than=soon', 400, 'invalid age'],
      ['/jobs?after=x', 400, 'invalid cursor'],
      ['/jobs/bulk?action=explode', 400, 'invalid action'],
      ['/jobs/99999999', 404, 'no job 99999999'],
    ] as const) {
      const res = await fetch(new URL(path, dash.url));
      expect(res.status, path).toBe(code);
      expect(await res.text(), path).toContain(text);
    }
    const broken = await startDashboard({ pool: db.pool, schema: 'no_such_schema_dash', port: 0 });
    try {
      const res = await fetch(broken.url);
      expect(res.status).toBe(500);
      expect(await res.text()).toContain('schema no_such_schema_dash is not migrated');
    } finally {
      await broken.close();
    }
  });

  it('read-only: no action buttons, every POST refused', async () => {
    const ro = await startDashboard({ pool: db.pool, schema: db.schema, port: 0, readOnly: true });
    try {
      for (const path of ['/', '/jobs', `/jobs/${ids.xss}`, '/schedules']) {
        await page.goto(new URL(path, ro.url).href);
        expect(await page.locator('form[method=post]').count(), path).toBe(0);
        expect(await page.locator('a[data-bulk]').count(), path).toBe(0);
      }
      expect(await page.locator('.badge.readonly').innerText()).toBe('read-only');
      const s = await session(ro.url);
      const res = await post(ro.url, `/jobs/${ids.xss}/retry`, { _csrf: s.csrf }, { cookie: s.cookie });
      expect(res.status).toBe(403);
      expect((await fetch(new URL('/jobs/bulk?action=delete', ro.url))).status).toBe(403);
      expect(await status(ids.xss)).toBe('failed');
    } finally {
      await ro.close();
    }
  });

  it('refuses a non-local host without a token, and a short token', async () => {
    await expect(startDashboard({ pool: db.pool, schema: db.schema, host: '0.0.0.0', port: 0 })).rejects.toThrow(
      /refusing to serve the dashboard on 0\.0\.0\.0 without an auth token/,
    );
    await expect(startDashboard({ pool: db.pool, schema: db.schema, port: 0, authToken: 'short' })).rejects.toThrow(/at least 16 characters/);
  });

  it('with an auth token: 401 without it, 200 with the header, and a login form that sets a cookie', async () => {
    const locked = await startDashboard({ pool: db.pool, schema: db.schema, port: 0, authToken: TOKEN });
    try {
      expect((await fetch(locked.url)).status).toBe(401);
      expect((await fetch(locked.url, { headers: { authorization: 'Bearer wrong-token-0123456789' } })).status).toBe(401);
      const withHeader = await fetch(locked.url, { headers: { authorization: `Bearer ${TOKEN}` } });
      expect(withHeader.status, await withHeader.text()).toBe(200);
      // In the browser: the 401 page is the login form; a wrong token stays out, the right one gets in.
      const first = await page.goto(new URL('/jobs?queue=mail', locked.url).href);
      expect(first?.status()).toBe(401);
      await page.fill('input[name=token]', 'wrong-token-0123456789');
      await page.click('button[type=submit]');
      expect(await page.locator('.flash.error').innerText()).toContain('not the token');
      await page.fill('input[name=token]', TOKEN);
      await page.click('button[type=submit]');
      await page.waitForURL(/\/jobs\?queue=mail$/);
      expect(await page.locator('h1').innerText()).toBe('Jobs');
      const cookies = await context.cookies(locked.url);
      const auth = cookies.find((c) => c.name === `skiplock_auth_${locked.port}`);
      expect(auth).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
      expect(auth?.value).not.toContain(TOKEN);
    } finally {
      await locked.close();
    }
  });

  it('the html template escapes every value unless it is html itself', () => {
    const name = '<b>"x" & \'y\'</b>';
    expect(html`<td title="${name}">${name}</td>${[html`<i>${name}</i>`, 1, null, false]}`.text).toBe(
      '<td title="&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;">&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;</td><i>&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;</i>1',
    );
  });
});

describe('skiplock dashboard (CLI)', () => {
  const target = ['--database-url', DATABASE_URL, '--schema', db.schema];

  it('refuses a non-local host without a token: one line, exit 2; same for worker --dashboard', async () => {
    const r = await runCli(['dashboard', ...target, '--host', '0.0.0.0']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^skiplock: refusing to serve the dashboard on 0\.0\.0\.0 without an auth token.*\n$/);
    const w = await runCli(['worker', ...target, '--dashboard-host', '0.0.0.0', '--tasks', 'workers']);
    expect(w.code).toBe(2);
    expect(w.stderr).toMatch(/^skiplock: refusing to serve the dashboard on 0\.0\.0\.0/);
  });

  it('worker --dashboard serves the dashboard beside its metrics and closes it at shutdown', async () => {
    const child = startCli(['worker', ...target, '--dashboard-port', '0', '--metrics-port', '0', '--concurrency', '2', '--queues', 'cli-dash']);
    const url = await waitFor(
      async () => /"url":"(http:\/\/127\.0\.0\.1:\d+\/)","readOnly":false,"auth":false,"msg":"dashboard started"/.exec(child.output().stdout)?.[1],
      20_000,
      'the dashboard started line',
    );
    await waitFor(async () => /"msg":"worker started"/.test(child.output().stdout), 20_000, 'the worker to start');
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('cli-dash');
    child.kill('SIGTERM');
    expect((await child.done).code).toBe(0);
    await expect(fetch(url)).rejects.toThrow();
  });

  it('serves until SIGTERM, then exits 0; the token may come from SKIPLOCK_DASHBOARD_TOKEN', async () => {
    const child = startCli(['dashboard', ...target, '--port', '0', '--log-level', 'silent'], { env: { SKIPLOCK_DASHBOARD_TOKEN: TOKEN } });
    const url = await waitFor(async () => /dashboard on (http:\/\/127\.0\.0\.1:\d+\/)/.exec(child.output().stdout)?.[1], 15_000, 'the dashboard line');
    expect((await fetch(url)).status).toBe(401);
    expect((await fetch(url, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
    child.kill('SIGTERM');
    const result = await child.done;
    expect(result.code).toBe(0);
  });
});

afterAll(() => {
  // The docs' screenshots (the overview and a job's page) are refreshed on request only, so
  // that a test run leaves the checkout as it was: UPDATE_SCREENSHOTS=1 npx vitest run test/dashboard.test.ts
  if (process.env.UPDATE_SCREENSHOTS !== '1') return;
  for (const [from, to] of [
    ['overview', 'dashboard-overview'],
    ['job', 'dashboard-job'],
  ] as const) {
    try {
      copyFileSync(join(SHOTS, `${from}.png`), join(ROOT, 'docs', `${to}.png`));
    } catch {
      // a failed test made no screenshot: nothing to copy
    }
  }
});
