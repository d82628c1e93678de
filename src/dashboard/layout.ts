import { formatSpan } from '../admin/why.js';
import { VERSION } from '../version.js';
import { type Html, type Interpolation, html } from './html.js';

/** What every page needs besides its data. */
export interface View {
  /** The CSRF token of the request's session, for every form that POSTs. */
  readonly csrf: string;
  /** No action buttons; every POST is refused. */
  readonly readOnly: boolean;
  /** The schema shown in the header; empty for a visitor not (yet) let in, who sees no navigation either. */
  readonly schema: string;
  /** The flash message of the redirect that led here (from the query string). */
  readonly flash: { readonly text: string; readonly error: boolean } | undefined;
  /** Time of the request (ms since the epoch), for "ago" columns. */
  readonly now: number;
}

const NAV: ReadonlyArray<readonly [string, string]> = [
  ['/', 'Overview'],
  ['/jobs', 'Jobs'],
  ['/schedules', 'Schedules'],
];

/** A whole page: header with navigation, the flash message, then the body. No script anywhere. */
export function layout(view: View, title: string, here: string, body: Interpolation): Html {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${title} · skiplock</title>
<link rel="stylesheet" href="/assets/style.css">
</head>
<body>
<header class="top">
  <a class="brand" href="/">skiplock</a>
  ${view.schema !== '' && html`<nav>${NAV.map(([href, label]) => html`<a href="${href}" class="${href === here ? 'here' : ''}">${label}</a>`)}</nav>
  <div class="meta">${view.readOnly && html`<span class="badge readonly">read-only</span>`}<span>schema <span class="mono">${view.schema}</span></span><span>v${VERSION}</span></div>`}
</header>
<main>
${view.flash && html`<div class="flash ${view.flash.error ? 'error' : 'ok'}" role="status">${view.flash.text}</div>`}
${body}
</main>
</body>
</html>
`;
}

/**
 * A button that POSTs to `action` with the session's CSRF token (and `fields`); nothing in
 * read-only mode.
 */
export function postButton(
  view: View,
  action: string,
  label: string,
  options: { danger?: boolean; primary?: boolean; fields?: Readonly<Record<string, string | readonly string[]>>; testId?: string } = {},
): Html {
  if (view.readOnly) return html``;
  const hidden = Object.entries(options.fields ?? {}).flatMap(([name, value]) =>
    (typeof value === 'string' ? [value] : value).map((v) => html`<input type="hidden" name="${name}" value="${v}">`),
  );
  const cls = options.danger ? 'danger' : options.primary ? 'primary' : '';
  return html`<form class="inline" method="post" action="${action}"><input type="hidden" name="_csrf" value="${view.csrf}">${hidden}<button type="submit" class="${cls}" data-action="${options.testId ?? label.toLowerCase()}">${label}</button></form>`;
}

export function badge(kind: string, text: string = kind): Html {
  return html`<span class="badge ${kind}">${text}</span>`;
}

/** "2024-05-01 12:00:03 UTC" (seconds), or "-" for none. */
export function time(value: Date | string | null | undefined): string {
  if (value === null || value === undefined) return '-';
  const d = typeof value === 'string' ? new Date(value) : value;
  if (Number.isNaN(d.getTime())) return String(value);
  return `${d.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

/** A time with how long ago (or from now) it is. */
export function when(view: View, value: Date | string | null | undefined): Html {
  if (value === null || value === undefined) return html`<span class="muted">-</span>`;
  const d = typeof value === 'string' ? new Date(value) : value;
  const delta = view.now - d.getTime();
  const rel = Math.abs(delta) < 1000 ? 'now' : delta > 0 ? `${formatSpan(delta)} ago` : `in ${formatSpan(-delta)}`;
  return html`<span title="${time(d)}">${rel}</span>`;
}

/** A span in ms for a table cell, or "-". */
export function span(ms: number | null | undefined): string {
  return ms === null || ms === undefined ? '-' : formatSpan(ms);
}

/** One line of a long text, cut at `max` characters. */
export function oneLine(text: string | null, max = 90): string {
  if (text === null) return '';
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** An empty-state line inside a card. */
export function empty(text: string): Html {
  return html`<p class="empty">${text}</p>`;
}
