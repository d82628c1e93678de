/**
 * HTML with escaping as the default: the `html` tagged template escapes every interpolated
 * value, except values that are themselves `Html` (made by `html` itself, so already
 * escaped). No page builds markup by string concatenation, so none can forget to escape:
 * a job's payload, an error message or a queue name always reaches the page as text.
 *
 *   html`<td>${job.last_error}</td>`        // escaped
 *   html`<ul>${items.map((i) => html`<li>${i}</li>`)}</ul>`   // nested Html kept as is
 *
 * Values are typed: objects (a Date, a record) cannot be interpolated by mistake; format
 * them into text first. null, undefined and false render as nothing (for `cond && html`...``).
 */

/** Held by this module only: no other code can make an Html. */
const MINT: unique symbol = Symbol('Html');

/** Markup that is safe to send as is: only `html` makes it (there is no other way to mark text safe). */
export class Html {
  readonly text: string;

  constructor(mint: typeof MINT, text: string) {
    if (mint !== MINT) throw new TypeError('Html is made by html`` only');
    this.text = text;
  }

  toString(): string {
    return this.text;
  }
}

/** What a template accepts: text and numbers (escaped), Html (kept), lists of either. */
export type Interpolation = Html | string | number | bigint | boolean | null | undefined | readonly Interpolation[];

const ESCAPES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
  '`': '&#96;',
};

/** Escapes text for an HTML text node or a quoted attribute value. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"'`]/g, (c) => ESCAPES[c] ?? c);
}

function render(value: Interpolation): string {
  if (value instanceof Html) return value.text;
  if (value === null || value === undefined || value === false) return '';
  if (Array.isArray(value)) return (value as readonly Interpolation[]).map(render).join('');
  return escapeHtml(String(value));
}

/** The escaping template tag (see the file's comment). */
export function html(strings: TemplateStringsArray, ...values: readonly Interpolation[]): Html {
  let out = strings[0] ?? '';
  values.forEach((value, i) => {
    out += render(value) + (strings[i + 1] ?? '');
  });
  return new Html(MINT, out);
}

/** A URL of the dashboard itself: a path and query parameters, encoded (empty values left out). */
export function localUrl(path: string, params: Readonly<Record<string, string | readonly string[] | undefined>> = {}): string {
  if (!path.startsWith('/') || path.startsWith('//')) throw new Error(`not a local path: ${path}`);
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    for (const v of typeof value === 'string' ? [value] : (value ?? [])) if (v !== '') query.append(key, v);
  }
  const text = query.toString();
  return text === '' ? path : `${path}?${text}`;
}
