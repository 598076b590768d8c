// Run view: the run's state and actions, its parts (owner, attempt, progress,
// error) and its results (output, emitted records, applied or not).

import { get, post } from './api.js';
import { changesTable } from './inventory.js';
import {
  ACTIVE_REFRESH_MS, attempt, badge, button, details, h, heading, isActive, json, progress, refresh,
  replace, table, when,
} from './dom.js';

const ACTIVE = ['created', 'waiting', 'running'];
const TERMINAL = ['finished', 'failed', 'canceled'];

function act(label, path, body, attrs) {
  return button(label, () => attempt(async () => {
    await post(path, body);
    refresh();
  }), { class: 'small', ...attrs });
}

/** The buttons that apply to a run in its state. */
export function runActions(r) {
  const path = `/runs/${r.id}`;
  const out = [];
  if (ACTIVE.includes(r.state)) {
    out.push(act('Suspend', `${path}/suspend`, undefined, { dataset: { action: 'suspend' } }));
  }
  if (r.state === 'suspended') {
    out.push(act('Resume', `${path}/resume`, undefined, { dataset: { action: 'resume' } }));
  }
  if (!TERMINAL.includes(r.state)) {
    out.push(act('Cancel', `${path}/cancel`, undefined,
      { class: 'small danger', dataset: { action: 'cancel' } }));
  }
  if (TERMINAL.includes(r.state)) {
    if (r.parts.failed + r.parts.canceled > 0) {
      out.push(act('Re-run failed', `${path}/rerun`, { failed_only: true },
        { dataset: { action: 'rerun-failed' } }));
    }
    out.push(act('Re-run all', `${path}/rerun`, { failed_only: false },
      { dataset: { action: 'rerun' } }));
  }
  return out;
}

/** Selected targets listed inline up to this many; more go in a disclosure. */
const INLINE_TARGETS = 12;

/** How the run came to be: its cause, and the run it repeats or follows. */
function causeText(r) {
  return [
    r.cause,
    r.rerun_of ? [' (re-run of ', h('a', { href: `#/runs/${r.rerun_of}` }, `#${r.rerun_of}`), ')'] : null,
    r.caused_by ? [' by the end of run ', h('a', { href: `#/runs/${r.caused_by}`, id: 'run-caused-by' },
      `#${r.caused_by}`)] : null,
  ];
}

/** The targets the task's selector resolved to (none: nothing to do). */
function selectedText(r) {
  const targets = r.selected;
  if (targets.length === 0) {
    return h('span', { id: 'run-selected' },
      'the selector matched no asset in the inventory: nothing to do');
  }
  const list = targets.length <= INLINE_TARGETS
    ? targets.map((t) => h('span', { class: 'chip' }, t))
    : details('the list', h('pre', { class: 'json' }, targets.join('\n')), `selected-${r.id}`);
  return h('span', { id: 'run-selected' },
    `${targets.length} target(s) from the inventory: `, list);
}

function partProgress(p) {
  if (p.state === 'finished') return progress(1, 1);
  if (!p.progress) return h('span', { class: 'muted' }, '—');
  const [done, total] = p.progress;
  return progress(done, total);
}

export async function render(view, id) {
  const [r, parts, results, changes] = await Promise.all([
    get(`/runs/${encodeURIComponent(id)}`),
    get(`/runs/${encodeURIComponent(id)}/parts`),
    get(`/runs/${encodeURIComponent(id)}/results`),
    get(`/changes?run=${encodeURIComponent(id)}&limit=1000`),
  ]);
  const failed = await get(`/runs/${encodeURIComponent(id)}/processing`);
  const c = r.parts;
  const total = c.waiting + c.running + c.suspended + c.finished + c.failed + c.canceled;
  const partRows = parts.map((p) => {
    const row = [
      String(p.id), p.label, badge(p.state), p.owner ?? p.pinned_agent ?? '—',
      String(p.state === 'finished' ? p.result_attempt ?? p.attempt : p.attempt), partProgress(p),
      p.error ? h('span', { class: 'error-text' }, p.error)
        : p.unassignable ? h('span', { class: 'error-text' }, `waiting: ${p.unassignable}`) : '',
    ];
    row.attrs = { dataset: { part: p.id } };
    return row;
  });
  const labels = new Map(parts.map((p) => [p.id, p.label]));
  const resultRows = results.results.map((res) => [
    labels.get(res.part_id) ?? String(res.part_id), String(res.attempt), res.agent, badge(res.status),
    res.applied ? h('span', { class: 'badge state-finished' }, 'applied')
      : h('span', { class: 'badge state-canceled' }, 'not applied'),
    `${res.duration_ms} ms`,
    h('div', { class: 'result' },
      res.error ? h('div', { class: 'error-text' }, res.error) : null,
      res.output !== null && res.output !== undefined
        ? details('output', json(res.output), `out-${res.part_id}-${res.attempt}`) : null,
      res.emitted?.length ? details(`${res.emitted.length} emitted record(s)`, json(res.emitted),
        `emit-${res.part_id}-${res.attempt}`) : null,
      res.logs?.length ? details(`${res.logs.length} log line(s)`, json(res.logs),
        `logs-${res.part_id}-${res.attempt}`) : null),
  ]);
  replace(view,
    h('p', { class: 'crumbs' }, h('a', { href: '#/tasks' }, 'Tasks'), ' / ',
      h('a', { href: `#/tasks/${r.task_id}` }, r.spec.name), ` / run #${r.id}`),
    heading(`Run #${r.id} of ${r.spec.name}`, runActions(r)),
    h('div', { class: 'card facts' },
      h('dl', {},
        h('dt', {}, 'State'), h('dd', { id: 'run-state' }, badge(r.state)),
        h('dt', {}, 'Parts finished'), h('dd', {}, progress(c.finished, total)),
        h('dt', {}, 'Cause'), h('dd', {}, causeText(r)),
        Array.isArray(r.selected) ? [h('dt', {}, 'Targets'), h('dd', {}, selectedText(r))] : null,
        h('dt', {}, 'Plugin'), h('dd', {}, r.spec.plugin, ' ',
          h('code', {}, r.plugin_sha256.slice(0, 16))),
        h('dt', {}, 'Created'), h('dd', {}, when(r.created_at)),
        h('dt', {}, 'Ended'), h('dd', {}, when(r.ended_at)),
        r.error ? [h('dt', {}, 'Error'), h('dd', { class: 'error-text' }, r.error)] : null)),
    h('h2', {}, `Parts (${parts.length})`),
    table(['Part', 'Label', 'State', 'Owner', 'Attempt', 'Progress', 'Error'], partRows,
      'No parts yet (the run is not split).'),
    h('h2', {}, `Results (${results.results.length})`),
    table(['Part', 'Attempt', 'Agent', 'Status', 'Counted', 'Duration', 'Output'], resultRows,
      'No result yet.'),
    failed.length ? [
      heading('Processing failed', act('Process again', `/runs/${r.id}/reprocess`, undefined,
        { dataset: { action: 'reprocess' } })),
      table(['Part', 'Attempt', 'Reason'], failed.map((f) => [f.part_id, f.attempt, f.reason])),
    ] : null,
    h('h2', {}, `What it changed in the inventory (${changes.changes.length}${changes.next ? '+' : ''})`),
    h('div', { id: 'run-changes' }, changesTable(changes.changes)));
  return isActive(r) ? ACTIVE_REFRESH_MS : undefined;
}
