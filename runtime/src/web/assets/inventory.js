// Inventory views: the assets (a search over the API's filters), an asset's
// page (attributes with their source, relations, history), and the changes
// table the run page shows.

import { get } from './api.js';
import { badge, h, heading, replace, table, when } from './dom.js';

/**
 * Not redrawn by live updates: they would wipe a search being typed (the
 * inventory changes with results, not with the scheduler's events).
 */
export const live = false;

/** The search form's filters, kept in the hash: #/inventory?kind=host&q=web. */
function filters() {
  const query = location.hash.split('?')[1] ?? '';
  return new URLSearchParams(query);
}

function keysText(asset) {
  return Object.entries(asset.keys ?? {})
    .flatMap(([name, values]) => values.map((v) => `${name}=${v}`)).join(' ');
}

function valueText(value) {
  if (value === null || value === undefined) return '—';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** The changes as a table (asset links unless on the asset's own page). */
export function changesTable(changes, withAsset = true) {
  const rows = changes.map((c) => {
    const row = [
      when(c.at),
      withAsset ? h('a', { href: `#/assets/${c.asset_id}` }, `#${c.asset_id}`) : null,
      c.kind.replaceAll('_', ' '),
      c.subject ?? '',
      valueText(c.old),
      valueText(c.new),
      c.run_id ? h('a', { href: `#/runs/${c.run_id}` }, `#${c.run_id}`) : '',
    ].filter((cell) => cell !== null);
    row.attrs = { dataset: { change: c.kind } };
    return row;
  });
  const headers = ['When', 'Asset', 'Change', 'What', 'Before', 'After', 'Run']
    .filter((t) => withAsset || t !== 'Asset');
  return table(headers, rows, 'No change.');
}

/** #/inventory: the assets the filters select, a page of 100. */
export async function render(view) {
  const params = filters();
  const query = new URLSearchParams(params);
  query.set('limit', '100');
  const page = await get(`/assets?${query}`);
  const input = (name, placeholder) => h('input', {
    name, placeholder, value: params.get(name) ?? '', dataset: { filter: name },
  });
  const search = h('form', { class: 'card search', id: 'inventory-search' },
    input('q', 'name or key contains'), input('kind', 'kind'), input('cidr', 'network, 10.1.0.0/16'),
    input('attr', 'attribute: name=value or name~text'),
    h('button', { type: 'submit' }, 'Search'));
  search.addEventListener('submit', (e) => {
    e.preventDefault();
    const next = new URLSearchParams();
    for (const el of search.querySelectorAll('input')) {
      if (el.value.trim()) next.set(el.name, el.value.trim());
    }
    location.hash = `#/inventory?${next}`;
  });
  const rows = page.assets.map((a) => {
    const row = [
      h('a', { href: `#/assets/${a.id}` }, `#${a.id}`),
      a.kind.replaceAll('_', ' '),
      a.name ?? '',
      keysText(a),
      when(a.last_seen),
      a.disappeared_at ? badge('gone') : '',
    ];
    row.attrs = { dataset: { asset: a.id } };
    return row;
  });
  replace(view,
    heading('Inventory'),
    search,
    table(['Asset', 'Kind', 'Name', 'Keys', 'Last seen', ''], rows, 'No asset matches.'),
    page.next ? h('p', { class: 'muted' }, 'More assets match: narrow the search.') : null);
  return undefined;
}

/** #/assets/7: one asset. */
export async function renderAsset(view, id) {
  const a = await get(`/assets/${encodeURIComponent(id)}`);
  const sources = Object.fromEntries(a.sources.map((s) => [s.attribute, s]));
  const attributeRows = Object.entries(a.attributes).map(([name, value]) => {
    const s = sources[name];
    return [name, valueText(value), s?.plugin ?? '',
      s ? h('a', { href: `#/runs/${s.run_id}` }, `#${s.run_id}`) : '', s?.agent ?? '', when(s?.observed_at)];
  });
  const relationRows = a.relations.map((r) => {
    const outgoing = r.from_id === a.id;
    const other = outgoing ? r.to_id : r.from_id;
    return [outgoing ? r.relation : `${r.relation} (from)`,
      h('a', { href: `#/assets/${other}` }, `#${other} ${r.other}`)];
  });
  replace(view,
    h('p', { class: 'crumbs' }, h('a', { href: '#/inventory' }, 'Inventory'), ` / asset #${a.id}`),
    heading(`${a.name ?? a.kind} (#${a.id})`, a.disappeared_at ? badge('gone') : null),
    h('div', { class: 'card facts' },
      h('dl', {},
        h('dt', {}, 'Kind'), h('dd', {}, a.kind.replaceAll('_', ' ')),
        h('dt', {}, 'Keys'), h('dd', {}, keysText(a)),
        h('dt', {}, 'First seen'), h('dd', {}, when(a.first_seen)),
        h('dt', {}, 'Last seen'), h('dd', {}, when(a.last_seen)),
        a.disappeared_at ? [h('dt', {}, 'Gone since'), h('dd', {}, when(a.disappeared_at))] : null)),
    h('h2', {}, 'Attributes'),
    table(['Attribute', 'Value', 'Plugin', 'Run', 'Agent', 'Observed'], attributeRows, 'No attribute.'),
    h('h2', {}, 'Relations'),
    table(['Relation', 'Asset'], relationRows, 'No relation.'),
    h('h2', {}, 'History'),
    h('div', { id: 'asset-history' }, changesTable(a.history, false)));
  return undefined;
}
