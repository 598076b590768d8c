// Tasks view: every task with its latest run, progress and actions.

import { get, post } from './api.js';
import {
  ACTIVE_REFRESH_MS, attempt, badge, button, h, heading, isActive, progress, refresh, replace, table,
} from './dom.js';
import { runActions } from './run.js';

/** `90 s`, `5 min`, `2 h`, `1 d`: the largest unit that divides it. */
function interval(seconds) {
  for (const [unit, n] of [['d', 86400], ['h', 3600], ['min', 60]]) {
    if (seconds >= n && seconds % n === 0) return `${seconds / n} ${unit}`;
  }
  return `${seconds} s`;
}

/** `once`, `every 1 h`, `cron 0 3 * * *`, `manual`. */
export function frequencyText(f) {
  switch (f?.kind) {
    case 'once': return f.at ? `once at ${f.at}` : 'once';
    case 'every': return `every ${interval(f.seconds)}`;
    case 'cron': return `cron ${f.expr}`;
    case 'manual': return 'manual';
    default: return JSON.stringify(f);
  }
}

/** A run's state badge and its parts progress (finished out of all). */
export function runSummary(r) {
  if (!r) return h('span', { class: 'muted' }, 'never run');
  const c = r.parts;
  const total = c.waiting + c.running + c.suspended + c.finished + c.failed + c.canceled;
  const detail = `waiting ${c.waiting}, running ${c.running}, suspended ${c.suspended}, ` +
    `finished ${c.finished}, failed ${c.failed}, canceled ${c.canceled}`;
  return h('span', { class: 'run-summary' },
    h('a', { href: `#/runs/${r.id}` }, `#${r.id}`), ' ', badge(r.state), ' ',
    progress(c.finished, total, detail));
}

export async function render(view) {
  const list = await get('/tasks');
  const rows = list.map((t) => {
    const row = [
      h('a', { href: `#/tasks/${t.id}`, class: 'strong' }, t.spec.name),
      t.spec.plugin,
      [frequencyText(t.spec.frequency),
        t.spec.after ? h('span', { class: 'muted' }, `, after ${t.spec.after.task}`) : null],
      String(t.spec.priority),
      runSummary(t.latest_run),
      h('div', { class: 'actions' },
        button('Run now', () => attempt(async () => {
          await post(`/tasks/${t.id}/run`);
          refresh();
        }), { class: 'primary small', dataset: { action: 'force-run' } }),
        t.latest_run ? runActions(t.latest_run) : null,
        h('a', { class: 'button ghost small', href: `#/tasks/${t.id}/edit` }, 'Edit')),
    ];
    row.attrs = { dataset: { task: t.spec.name } };
    return row;
  });
  replace(view,
    heading('Tasks', h('a', { class: 'button primary', href: '#/tasks/new' }, 'New task')),
    table(['Name', 'Plugin', 'Frequency', 'Priority', 'Latest run', 'Actions'], rows,
      'No task yet: create one with "New task".'));
  return list.some((t) => isActive(t.latest_run)) ? ACTIVE_REFRESH_MS : undefined;
}
