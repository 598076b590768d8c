// DOM helpers. Everything rendered goes through text nodes: names, labels,
// errors and outputs come from plugins and admins and are never parsed as HTML.

import { serverNow } from './api.js';

/**
 * Build an element: `h('td', {class: 'x', onclick: fn}, 'text', child)`.
 * String children become text nodes; `on*` attributes become listeners;
 * `false`/`null` children are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(key, '');
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A colored badge for a run or part state (or up/down). */
export function badge(state) {
  return h('span', { class: `badge state-${state}` }, state);
}

/** A progress bar `done/total` with its numbers. */
export function progress(done, total, title) {
  const pct = total > 0 ? Math.min(100, Math.round((100 * done) / total)) : 0;
  const bar = h('span', { class: 'bar-fill' });
  bar.style.width = `${pct}%`; // CSSOM, not an inline style attribute: allowed by the CSP
  return h('span', { class: 'progress', title: title ?? `${pct}%` },
    h('span', { class: 'bar' }, bar),
    h('span', { class: 'bar-text' }, `${done}/${total}`));
}

/** A table with a header row; `rows` are arrays of cells (nodes or text). */
export function table(headers, rows, empty = 'Nothing yet.') {
  if (rows.length === 0) return h('p', { class: 'muted empty' }, empty);
  return h('div', { class: 'table-wrap' },
    h('table', {},
      h('thead', {}, h('tr', {}, headers.map((t) => h('th', {}, t)))),
      h('tbody', {}, rows.map((cells) => {
        const attrs = cells.attrs ?? {};
        return h('tr', attrs, cells.map((c) => h('td', {}, c)));
      }))));
}

/** `2026-01-02 03:04:05` in the browser's time zone, or an em dash. */
export function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Seconds since `iso` on the daemon's clock. */
export function ageSeconds(iso) {
  return Math.max(0, Math.round((serverNow() - Date.parse(iso)) / 1000));
}

/** `42 s ago`, `3 min ago`, `5 h ago`, `2 d ago`. */
export function ago(iso) {
  const s = ageSeconds(iso);
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

/** A button running `action` (async); disabled while it runs. */
export function button(label, action, attrs = {}) {
  const el = h('button', { type: 'button', ...attrs }, label);
  el.addEventListener('click', async () => {
    el.disabled = true;
    try {
      await action();
    } finally {
      el.disabled = false;
    }
  });
  return el;
}

/**
 * A disclosure: `summary` shown, `body` when opened. `key` names it so a
 * live refresh keeps it open.
 */
export function details(summary, body, key) {
  return h('details', { dataset: key ? { key } : undefined }, h('summary', {}, summary), body);
}

/** Pretty JSON for a <pre>. */
export function json(value) {
  return h('pre', { class: 'json' }, JSON.stringify(value, null, 2));
}

/** A page heading with optional actions on the right. */
export function heading(title, ...actions) {
  return h('div', { class: 'page-head' }, h('h1', {}, title),
    h('div', { class: 'actions' }, actions));
}

/** Show an error (or clear it with null) in the banner under the top bar. */
export function flash(message) {
  const el = document.getElementById('flash');
  el.textContent = message ?? '';
  el.hidden = !message;
}

/** Run an API action; show its error in the banner instead of throwing. */
export async function attempt(action) {
  try {
    flash(null);
    return await action();
  } catch (e) {
    flash(e.message);
    return undefined;
  }
}

/**
 * Progress is not an event (it would flood the stream): a view showing an
 * active run asks to be redrawn this often, in milliseconds.
 */
export const ACTIVE_REFRESH_MS = 2000;

/** Whether a run may still change (its parts' progress moves). */
export function isActive(run) {
  return !!run && !['finished', 'failed', 'canceled'].includes(run.state);
}

/** Ask the page to refresh the current view (after an action). */
export function refresh() {
  window.dispatchEvent(new Event('jobstack:refresh'));
}
