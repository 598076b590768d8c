// Create or edit a task. The parameters are checked against the plugin's
// schema by the API, whose error message is shown as is. Secrets are
// write-only: the field is always empty, and left empty on edit it keeps the
// stored ones. A selector (targets from the inventory) is typed as JSON; a
// trigger is the name of the task to follow and which of its ends count.

import { get, post, put } from './api.js';
import { h, heading, json, replace } from './dom.js';

/** Never redrawn by live updates: it would wipe what the operator typed. */
export const live = false;

function field(label, input, hint) {
  return h('div', { class: 'field' },
    h('label', { for: input.id }, label), input,
    hint ? h('p', { class: 'hint' }, hint) : null);
}

function select(id, options, value) {
  return h('select', { id, name: id },
    options.map(([v, text]) => h('option', { value: v, selected: v === value }, text)));
}

/** The priority as the select's value and the custom number. */
function priorityParts(p) {
  return typeof p === 'number' ? ['custom', String(p)] : [p ?? 'normal', ''];
}

export async function render(view, key) {
  const [plugins, existing, tasks] = await Promise.all([
    get('/plugins'),
    key ? get(`/tasks/${encodeURIComponent(key)}`) : Promise.resolve(null),
    get('/tasks'),
  ]);
  const spec = existing?.spec ?? {
    name: '', plugin: plugins[0]?.name ?? '', params: {}, frequency: { kind: 'once' },
    priority: 'normal', targeting: {}, timeout_ms: 300000, retries: 2, mode: 'pooled',
  };
  const byName = new Map();
  for (const p of plugins) if (!byName.has(p.name)) byName.set(p.name, p); // newest first

  const name = h('input', { id: 'task-name', required: true, value: spec.name, maxlength: 128 });
  const plugin = select('task-plugin', [...byName.keys()].map((n) => [n, n]), spec.plugin);
  const params = h('textarea', { id: 'task-params', rows: 8, spellcheck: 'false' });
  params.value = JSON.stringify(spec.params ?? {}, null, 2);
  const schema = h('div', { class: 'schema' });
  const showSchema = () => {
    const s = byName.get(plugin.value)?.manifest?.params_schema;
    replace(schema, s ? h('details', {}, h('summary', {}, `Schema of ${plugin.value}'s parameters`), json(s)) : null);
  };
  plugin.addEventListener('change', showSchema);
  showSchema();
  const secrets = h('textarea', {
    id: 'task-secrets', rows: 3, spellcheck: 'false', autocomplete: 'off',
    placeholder: existing?.has_secrets ? 'secrets are set: leave empty to keep them' : '{"password": "…"}',
  });

  const selector = h('textarea', {
    id: 'task-selector', rows: 3, spellcheck: 'false',
    placeholder: '{"into": "devices", "kind": "host", "cidr": "10.0.0.0/16", "attr": ["tcp_open[]=161"], "seen_within": "1d"}',
  });
  selector.value = spec.select ? JSON.stringify(spec.select) : '';

  const follows = h('input', {
    id: 'task-follows', value: spec.after?.task ?? '', list: 'task-names', autocomplete: 'off',
    placeholder: 'none, or the name of a task',
  });
  const followsOn = select('task-follows-on', [
    ['finished', 'finished'], ['failed', 'failed'], ['any', 'finished or failed'],
  ], spec.after?.on ?? 'finished');
  const taskNames = h('datalist', { id: 'task-names' }, tasks
    .filter((t) => t.spec.name !== spec.name).map((t) => h('option', { value: t.spec.name })));

  const f = spec.frequency ?? { kind: 'once' };
  const freqKind = select('task-frequency', [
    ['once', 'once'], ['every', 'every N seconds'], ['cron', 'cron (UTC)'], ['manual', 'manual only'],
  ], f.kind);
  const freqValue = h('input', { id: 'task-frequency-value', value: f.seconds ?? f.expr ?? f.at ?? '' });
  const freqHint = h('p', { class: 'hint' });
  const showFreq = () => {
    const k = freqKind.value;
    freqValue.hidden = k === 'manual';
    freqValue.placeholder = { once: 'now, or 2026-01-01T03:00:00Z', every: 'seconds, e.g. 3600', cron: '0 3 * * *' }[k] ?? '';
    freqHint.textContent = { once: 'Runs once: now, or at the given UTC time.', every: 'First run now, then every N seconds.', cron: 'Five fields: minute hour day-of-month month day-of-week (UTC).', manual: 'Runs only when forced.' }[k];
  };
  freqKind.addEventListener('change', showFreq);
  showFreq();

  const [pKind, pNum] = priorityParts(spec.priority);
  const priority = select('task-priority', [
    ['high', 'high'], ['normal', 'normal'], ['low', 'low'], ['custom', 'custom number'],
  ], pKind);
  const priorityNum = h('input', { id: 'task-priority-number', type: 'number', min: 0, value: pNum, placeholder: 'lower first' });
  const showPriority = () => { priorityNum.hidden = priority.value !== 'custom'; };
  priority.addEventListener('change', showPriority);
  showPriority();

  const timeout = h('input', { id: 'task-timeout', type: 'number', min: 1, step: 'any', value: (spec.timeout_ms ?? 300000) / 1000 });
  const retries = h('input', { id: 'task-retries', type: 'number', min: 0, value: spec.retries ?? 2 });
  const agents = h('input', { id: 'task-agents', value: (spec.targeting?.agents ?? []).join(', '), placeholder: 'automatic (by network), or e.g. local, dc1-agent' });
  const eachAgent = h('input', { id: 'task-each-agent', type: 'checkbox', checked: !!spec.targeting?.each_agent });
  const mode = select('task-mode', [['pooled', 'pooled (1:N)'], ['dedicated', 'dedicated (1:1)']], spec.mode ?? 'pooled');
  const overlap = h('input', { id: 'task-overlap', type: 'checkbox', checked: !!spec.allow_overlap });
  const error = h('p', { id: 'form-error', class: 'error', role: 'alert', hidden: true });

  function fail(message) {
    error.textContent = message;
    error.hidden = false;
  }

  function parseJson(what, text) {
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new Error(`${what} is not valid JSON: ${e.message}`);
    }
  }

  /** The request body from the fields; unknown fields of the stored spec (grants) are kept. */
  function body() {
    const frequency = { kind: freqKind.value };
    const v = freqValue.value.trim();
    if (frequency.kind === 'every') frequency.seconds = Number(v);
    if (frequency.kind === 'cron') frequency.expr = v;
    if (frequency.kind === 'once' && v && v !== 'now') frequency.at = v;
    const task = {
      ...spec,
      name: name.value.trim(),
      plugin: plugin.value,
      params: parseJson('Parameters', params.value.trim() || '{}'),
      // Left empty: none (undefined is dropped from the JSON body).
      select: selector.value.trim() ? parseJson('Selector', selector.value.trim()) : undefined,
      after: follows.value.trim() ? { task: follows.value.trim(), on: followsOn.value } : undefined,
      frequency,
      priority: priority.value === 'custom' ? Number(priorityNum.value) : priority.value,
      targeting: {
        agents: agents.value.split(',').map((a) => a.trim()).filter(Boolean),
        each_agent: eachAgent.checked,
      },
      timeout_ms: Math.round(Number(timeout.value) * 1000),
      retries: Number(retries.value),
      mode: mode.value,
      allow_overlap: overlap.checked,
    };
    const out = { task };
    if (secrets.value.trim()) out.secrets = parseJson('Secrets', secrets.value.trim());
    else if (!existing) out.secrets = {};
    return out;
  }

  const submit = h('button', { type: 'submit', class: 'primary', id: 'task-submit' }, existing ? 'Save' : 'Create task');
  const form = h('form', { id: 'task-form', class: 'card form' },
    field('Name', name),
    field('Plugin', plugin, plugins.length ? null : 'No plugin uploaded yet: upload one in Plugins first.'),
    field('Parameters (JSON)', params, 'Checked against the plugin\'s schema by the daemon.'),
    schema,
    field('Targets from the inventory (selector, JSON, optional)', selector,
      'When a run is created, the addresses of the assets it selects go into the list parameter named by "into"; ' +
      'filters: kind, cidr, attr (name=value, name~text, name^=text, name[]=value), seen_within (e.g. 1d).'),
    field('Secrets (JSON, write-only)', secrets, 'Never shown again once saved; given to the plugin at run time only.'),
    h('div', { class: 'grid' },
      h('div', { class: 'field' }, h('label', { for: 'task-frequency' }, 'Frequency'),
        h('div', { class: 'row' }, freqKind, freqValue), freqHint),
      h('div', { class: 'field' }, h('label', { for: 'task-priority' }, 'Priority'),
        h('div', { class: 'row' }, priority, priorityNum)),
      h('div', { class: 'field' }, h('label', { for: 'task-follows' }, 'Run after a run of'),
        h('div', { class: 'row' }, follows, followsOn), taskNames,
        h('p', { class: 'hint' }, 'Optional. A task that follows another needs a frequency other than once (e.g. manual only).')),
      field('Timeout per part (s)', timeout),
      field('Retries', retries),
      field('Agents (comma-separated)', agents),
      field('Mode', mode)),
    h('div', { class: 'checks' },
      h('label', {}, eachAgent, ' every listed agent gets its own copy of every part'),
      h('label', {}, overlap, ' allow a new run while the previous one is active')),
    error,
    h('div', { class: 'actions' }, submit,
      h('a', { class: 'button ghost', href: existing ? `#/tasks/${existing.id}` : '#/tasks' }, 'Cancel')));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.hidden = true;
    submit.disabled = true;
    try {
      const saved = existing
        ? await put(`/tasks/${existing.id}`, body())
        : await post('/tasks', body());
      location.hash = `#/tasks/${saved.id}`;
    } catch (e) {
      fail(e.message);
    } finally {
      submit.disabled = false;
    }
  });

  replace(view, heading(existing ? `Edit ${spec.name}` : 'New task'), form);
}
