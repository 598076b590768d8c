// Agents view: name, networks, slots, last seen, up or down (and since when
// the daemon's monitor finds it down).

import { get } from './api.js';
import { ageSeconds, ago, badge, h, heading, replace, table, when } from './dom.js';

/**
 * An agent is up when it was seen within this many seconds: an idle agent
 * long-polls at most 25 s (MAX_LEASE_WAIT) and a busy one heartbeats every
 * 10 s, so two missed polls mean it is gone.
 */
const UP_WITHIN_S = 60;

/** Up and down change with the clock alone: redraw this often (ms). */
const CLOCK_REFRESH_MS = 15000;

export async function render(view) {
  const list = await get('/agents');
  const rows = list.map((a) => {
    // The monitor's word first: it marks an agent down after the set time.
    const up = !a.down_since && ageSeconds(a.last_seen) <= UP_WITHIN_S;
    const row = [
      h('span', { class: 'strong' }, a.name),
      a.networks?.length ? a.networks.join(', ') : h('span', { class: 'muted' }, 'none'),
      `${a.pooled_slots} pooled, ${a.dedicated_slots} dedicated`,
      a.plugins?.length ? a.plugins.join(', ') : h('span', { class: 'muted' }, 'all'),
      h('span', { title: when(a.last_seen) }, ago(a.last_seen)),
      h('span', { class: 'status' }, badge(up ? 'up' : 'down'),
        a.down_since ? h('span', { class: 'down-since', title: ago(a.down_since) },
          `down since ${when(a.down_since)}`) : null),
    ];
    row.attrs = { dataset: { agent: a.name }, class: a.down_since ? 'agent-down' : null };
    return row;
  });
  replace(view,
    heading('Agents'),
    table(['Name', 'Networks', 'Slots', 'Plugins', 'Last seen', 'Status'], rows,
      'No agent registered yet.'));
  return CLOCK_REFRESH_MS;
}
