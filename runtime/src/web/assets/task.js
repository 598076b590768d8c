// Task view: the definition and every run of one task.

import { get, post } from './api.js';
import {
  ACTIVE_REFRESH_MS, attempt, badge, button, h, heading, isActive, json, progress, refresh, replace,
  table, when,
} from './dom.js';
import { frequencyText } from './tasks.js';

export async function render(view, key) {
  const t = await get(`/tasks/${encodeURIComponent(key)}`);
  const runs = await get(`/runs?task=${encodeURIComponent(t.id)}`);
  const s = t.spec;
  const rows = runs.map((r) => {
    const c = r.parts;
    const total = c.waiting + c.running + c.suspended + c.finished + c.failed + c.canceled;
    return [
      h('a', { href: `#/runs/${r.id}` }, `#${r.id}`), badge(r.state), r.cause,
      progress(c.finished, total), when(r.created_at), when(r.ended_at),
      r.error ? h('span', { class: 'error-text' }, r.error) : '',
    ];
  });
  replace(view,
    h('p', { class: 'crumbs' }, h('a', { href: '#/tasks' }, 'Tasks'), ` / ${s.name}`),
    heading(s.name,
      button('Run now', () => attempt(async () => {
        await post(`/tasks/${t.id}/run`);
        refresh();
      }), { class: 'primary', dataset: { action: 'force-run' } }),
      h('a', { class: 'button ghost', href: `#/tasks/${t.id}/edit` }, 'Edit')),
    h('div', { class: 'card facts' },
      h('dl', {},
        h('dt', {}, 'Plugin'), h('dd', {}, s.plugin),
        h('dt', {}, 'Frequency'), h('dd', {}, frequencyText(s.frequency)),
        h('dt', {}, 'Next run'), h('dd', {}, when(t.next_run_at)),
        h('dt', {}, 'Priority'), h('dd', {}, String(s.priority)),
        h('dt', {}, 'Agents'), h('dd', {},
          s.targeting.agents?.length ? s.targeting.agents.join(', ') : 'automatic (by network)',
          s.targeting.each_agent ? ' — every agent gets every part' : ''),
        h('dt', {}, 'Timeout'), h('dd', {}, `${s.timeout_ms / 1000} s`),
        h('dt', {}, 'Retries'), h('dd', {}, String(s.retries)),
        h('dt', {}, 'Mode'), h('dd', {}, s.mode),
        h('dt', {}, 'Secrets'), h('dd', {}, t.has_secrets ? 'set (write-only)' : 'none'),
        h('dt', {}, 'Parameters'), h('dd', {}, json(s.params)))),
    h('h2', {}, `Runs (${runs.length})`),
    table(['Run', 'State', 'Cause', 'Parts finished', 'Created', 'Ended', 'Error'], rows,
      'No run yet.'));
  return runs.some(isActive) ? ACTIVE_REFRESH_MS : undefined;
}
