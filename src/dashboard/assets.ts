/**
 * The dashboard's one stylesheet, served at /assets/style.css (the Content-Security-Policy
 * allows styles from the dashboard itself only, and no script at all).
 */
export const STYLESHEET = `
:root {
  --fg: #1d2330; --muted: #5f6b7a; --line: #e2e6ec; --bg: #f6f7f9; --card: #fff;
  --accent: #2f5fd0; --ok: #1f7a3f; --warn: #9a6200; --bad: #b3261e; --idle: #6b7280;
}
* { box-sizing: border-box; }
html { font-size: 14px; }
body { margin: 0; font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg); background: var(--bg); line-height: 1.45; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
header.top { display: flex; align-items: center; gap: 1.5rem; padding: 0.6rem 1.5rem; background: #1d2330; color: #fff; }
header.top .brand { font-weight: 700; font-size: 1.15rem; letter-spacing: 0.02em; color: #fff; }
header.top nav { display: flex; gap: 1rem; }
header.top nav a { color: #c9d3e6; padding: 0.2rem 0.1rem; border-bottom: 2px solid transparent; }
header.top nav a.here { color: #fff; border-bottom-color: #8fb0ff; }
header.top .meta { margin-left: auto; color: #aab4c6; font-size: 0.9rem; display: flex; gap: 0.8rem; align-items: center; }
main { padding: 1.2rem 1.5rem 3rem; max-width: 1500px; }
h1 { font-size: 1.4rem; margin: 0.2rem 0 1rem; display: flex; align-items: center; gap: 0.6rem; flex-wrap: wrap; }
h2 { font-size: 1.1rem; margin: 1.6rem 0 0.6rem; }
section.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 0.9rem 1rem; margin-bottom: 1rem; overflow-x: auto; }
section.card > h2:first-child { margin-top: 0; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 0.4rem 0.6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 0.78rem; text-transform: uppercase; letter-spacing: 0.04em; color: var(--muted); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; }
tbody tr:hover { background: #f9fafc; }
td.error { color: var(--bad); max-width: 38rem; overflow-wrap: anywhere; }
td.mono, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.92em; }
.muted { color: var(--muted); }
.empty { color: var(--muted); font-style: italic; padding: 0.4rem 0; }
.badge { display: inline-block; padding: 0.05rem 0.5rem; border-radius: 999px; font-size: 0.8rem; font-weight: 600; border: 1px solid transparent; white-space: nowrap; }
.badge.queued { background: #e8effd; color: #2f5fd0; }
.badge.running { background: #fff4d6; color: var(--warn); }
.badge.succeeded, .badge.active, .badge.alive { background: #e3f4e8; color: var(--ok); }
.badge.failed, .badge.dead { background: #fde7e6; color: var(--bad); }
.badge.cancelled, .badge.paused { background: #eceef2; color: var(--idle); }
.badge.readonly { background: #3a4252; color: #fff; }
.flash { padding: 0.6rem 0.9rem; border-radius: 6px; margin-bottom: 1rem; border: 1px solid; }
.flash.ok { background: #e9f7ee; border-color: #b5e0c3; color: #14532d; }
.flash.error { background: #fdecea; border-color: #f3b9b4; color: #7f1d1d; }
form.inline { display: inline; margin: 0; }
.actions { display: flex; gap: 0.5rem; flex-wrap: wrap; align-items: center; }
button, .button { font: inherit; font-size: 0.88rem; padding: 0.25rem 0.75rem; border-radius: 5px; border: 1px solid #c5ccd8; background: #fff; color: var(--fg); cursor: pointer; white-space: nowrap; }
button:hover, .button:hover { background: #f0f3f8; text-decoration: none; }
button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
button.danger { color: var(--bad); border-color: #e6b3af; }
button.danger:hover { background: #fdecea; }
form.filters { display: flex; gap: 0.8rem 1.2rem; flex-wrap: wrap; align-items: flex-end; }
form.filters label { display: flex; flex-direction: column; font-size: 0.8rem; color: var(--muted); gap: 0.2rem; }
form.filters fieldset { border: none; margin: 0; padding: 0; display: flex; gap: 0.6rem; align-items: center; }
form.filters fieldset legend { font-size: 0.8rem; color: var(--muted); padding: 0 0 0.2rem; }
form.filters fieldset label { flex-direction: row; align-items: center; gap: 0.25rem; color: var(--fg); font-size: 0.9rem; }
input[type=text], input[type=password] { font: inherit; padding: 0.25rem 0.45rem; border: 1px solid #c5ccd8; border-radius: 5px; min-width: 9rem; background: #fff; }
.pager { display: flex; gap: 1rem; margin-top: 0.8rem; align-items: center; }
dl.fields { display: grid; grid-template-columns: max-content minmax(0, 1fr) max-content minmax(0, 1fr); gap: 0.35rem 1rem; margin: 0; align-items: baseline; }
dl.fields dt { color: var(--muted); font-size: 0.85rem; }
dl.fields dd { margin: 0; overflow-wrap: anywhere; }
pre { background: #f3f5f8; border: 1px solid var(--line); border-radius: 6px; padding: 0.7rem 0.9rem; overflow: auto; max-height: 28rem; margin: 0; font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.88rem; white-space: pre-wrap; overflow-wrap: anywhere; }
pre.error { color: var(--bad); background: #fff8f7; }
.why { border: 1px solid #d5def3; border-left: 4px solid var(--accent); background: #f3f6fd; padding: 0.6rem 0.9rem; border-radius: 0 6px 6px 0; margin: 0 0 1rem; }
.nowrap { white-space: nowrap; }
.errtext { white-space: pre-wrap; font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.86rem; max-height: 12rem; overflow: auto; }
.grid2 { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 1rem; }
@media (max-width: 1000px) { .grid2 { grid-template-columns: 1fr; } }
.login { max-width: 26rem; margin: 4rem auto; }
.login form { display: flex; flex-direction: column; gap: 0.8rem; }
`;
