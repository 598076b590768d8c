// Task view: the definition (with its selector and trigger), its place in a
// chain of tasks, and every run of the task.

import { get, post } from './api.js';
import {
  ACTIVE_REFRESH_MS, attempt, badge, button, h, heading, isActive, json, progress, refresh, replace,
  table, when,
} from './dom.js';
import { frequencyText, runSummary } from './tasks.js';

/** The upstream run ends that start a run, in words. */
const ON_TEXT = { finished: 'finished', failed: 'failed', any: 'finished or failed' };

/**
 * `targets from the inventory into `devices`: kind host, cidr 10.0.0.0/8,
 * tcp_open[]=161, seen within 1h`.
 */
export function selectorText(select) {
  const filters = [
    select.kind ? `kind ${select.kind}` : null,
    select.cidr ? `cidr ${select.cidr}` : null,
    ...(select.attr ?? []),
    select.seen_within ? `seen within ${select.seen_within}` : null,
  ].filter(Boolean);
  return h('span', { id: 'task-select' }, 'targets from the inventory into ',
    h('code', {}, select.into), ': ', filters.length ? filters.join(', ') : 'every asset');
}

/** A link to a task (by id: names may hold any character). */
function taskLink(t) {
  return h('a', { href: `#/tasks/${t.id}`, class: 'strong' }, t.spec.name);
}

/** `runs when a run of <scan> finished` (the upstream as a link when it exists). */
function triggerText(after, upstream, since) {
  return h('span', { id: 'task-after' }, 'runs when a run of ',
    upstream ? taskLink(upstream) : [h('span', { class: 'strong' }, after.task),
      h('span', { class: 'muted' }, ' (no such task)')],
    ` ${ON_TEXT[after.on] ?? after.on}`,
    // Upstream runs that ended before the trigger was set start nothing.
    since ? h('span', { class: 'muted' }, ` (for runs ending after ${when(since)})`) : null);
}

/** The task it follows and those that follow it, each with its latest run. */
function chainTable(chain) {
  const rows = [];
  if (chain.upstream) {
    const row = [h('span', { class: 'muted' }, 'follows'), taskLink(chain.upstream),
      runSummary(chain.upstream.latest_run)];
    row.attrs = { dataset: { chain: 'upstream' } };
    rows.push(row);
  }
  for (const t of chain.downstream) {
    const on = ON_TEXT[t.spec.after?.on] ?? t.spec.after?.on ?? '';
    const row = [h('span', { class: 'muted' }, `followed by (when ${on})`), taskLink(t),
      runSummary(t.latest_run)];
    row.attrs = { dataset: { chain: 'downstream' } };
    rows.push(row);
  }
  return h('div', { id: 'task-chain' }, table(['', 'Task', 'Latest run'], rows,
    'This task neither follows another nor is followed by one.'));
}

export async function render(view, key) {
  const t = await get(`/tasks/${encodeURIComponent(key)}`);
  const [runs, chain] = await Promise.all([
    get(`/runs?task=${encodeURIComponent(t.id)}`),
    get(`/tasks/${encodeURIComponent(t.id)}/chain`),
  ]);
  const s = t.spec;
  const rows = runs.map((r) => {
    const c = r.parts;
    const total = c.waiting + c.running + c.suspended + c.finished + c.failed + c.canceled;
    return [
      h('a', { href: `#/runs/${r.id}` }, `#${r.id}`), badge(r.state),
      r.caused_by ? [r.cause, ' by ', h('a', { href: `#/runs/${r.caused_by}` }, `#${r.caused_by}`)]
        : r.cause,
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
        s.after ? [h('dt', {}, 'Trigger'),
          h('dd', {}, triggerText(s.after, chain.upstream, t.chained_since))] : null,
        h('dt', {}, 'Next run'), h('dd', {}, when(t.next_run_at)),
        h('dt', {}, 'Priority'), h('dd', {}, String(s.priority)),
        h('dt', {}, 'Agents'), h('dd', {},
          s.targeting.agents?.length ? s.targeting.agents.join(', ') : 'automatic (by network)',
          s.targeting.each_agent ? ' — every agent gets every part' : ''),
        h('dt', {}, 'Timeout'), h('dd', {}, `${s.timeout_ms / 1000} s`),
        h('dt', {}, 'Retries'), h('dd', {}, String(s.retries)),
        h('dt', {}, 'Mode'), h('dd', {}, s.mode),
        h('dt', {}, 'Secrets'), h('dd', {}, t.has_secrets ? 'set (write-only)' : 'none'),
        s.select ? [h('dt', {}, 'Targets'), h('dd', {}, selectorText(s.select))] : null,
        h('dt', {}, 'Parameters'), h('dd', {}, json(s.params)))),
    h('h2', {}, 'Chain'),
    chainTable(chain),
    h('h2', {}, `Runs (${runs.length})`),
    table(['Run', 'State', 'Cause', 'Parts finished', 'Created', 'Ended', 'Error'], rows,
      'No run yet.'));
  const linked = [chain.upstream, ...chain.downstream].filter(Boolean).map((v) => v.latest_run);
  return [...runs, ...linked].some(isActive) ? ACTIVE_REFRESH_MS : undefined;
}
