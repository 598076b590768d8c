// Webhooks view: the subscriptions (where events go, how far delivery got,
// its retry state), a form to subscribe (the signing secret is shown once,
// right after), and the dead letters delivery gave up on, each re-sendable.

import { del, get, post } from './api.js';
import { button, details, flash, h, heading, json, refresh, replace, table, when } from './dom.js';

/** Every kind of event a subscription may ask for. */
export const EVENT_KINDS = [
  'run.finished', 'run.failed', 'part.failed', 'asset.appeared', 'asset.changed',
  'asset.disappeared', 'agent.down', 'agent.up', 'plugin.uploaded',
];

/** While a delivery is being retried, its next attempt nears: redraw this often (ms). */
const RETRY_REFRESH_MS = 5000;

/** The dead-letter filter, kept in the hash: #/webhooks?subscription=3. */
function subscriptionFilter() {
  const query = location.hash.split('?')[1] ?? '';
  return new URLSearchParams(query).get('subscription');
}

function subscribeForm() {
  const url = h('input', {
    id: 'webhook-url', required: true, autocomplete: 'off', placeholder: 'https://hooks.example.org/jobstack',
  });
  const kinds = EVENT_KINDS.map((kind) => h('input', {
    type: 'checkbox', name: 'webhook-event', value: kind, dataset: { kind },
  }));
  const secret = h('input', {
    id: 'webhook-secret-input', autocomplete: 'off', spellcheck: 'false',
    placeholder: 'generated when empty (at least 16 characters)',
  });
  const error = h('p', { id: 'webhook-error', class: 'error', role: 'alert', hidden: true });
  const created = h('div', { id: 'webhook-created', class: 'secret', role: 'status', hidden: true });
  const submit = h('button', { type: 'submit', class: 'primary', id: 'webhook-submit' }, 'Subscribe');
  const form = h('form', { id: 'webhook-form', class: 'card form' },
    h('div', { class: 'field' }, h('label', { for: 'webhook-url' }, 'URL'), url,
      h('p', { class: 'hint' }, 'Its host must be on the daemon\'s webhook allow-list (--webhook-allow).')),
    h('div', { class: 'field' }, h('label', {}, 'Events'),
      h('div', { class: 'checks kinds' }, kinds.map((box) => h('label', {}, box, ' ', box.value)))),
    h('div', { class: 'field' }, h('label', { for: 'webhook-secret-input' }, 'Signing secret (optional)'),
      secret),
    error,
    h('div', { class: 'actions' }, submit),
    created);

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.hidden = true;
    created.hidden = true;
    created.replaceChildren();
    const body = {
      url: url.value.trim(),
      events: kinds.filter((box) => box.checked).map((box) => box.value),
    };
    if (secret.value.trim()) body.secret = secret.value.trim();
    submit.disabled = true;
    try {
      const answer = await post('/webhooks', body);
      url.value = '';
      secret.value = '';
      for (const box of kinds) box.checked = false;
      replace(created,
        h('p', {}, `Subscribed #${answer.subscription.id} to ${answer.subscription.url}. Its signing secret:`),
        h('code', { id: 'webhook-secret' }, answer.secret),
        h('p', { class: 'hint' },
          'It is shown only now and cannot be read back: give it to the receiver to check the signatures.'));
      created.hidden = false;
      refresh();
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

function retryState(s) {
  if (!s.attempts) return h('span', { class: 'muted' }, 'up to date');
  return h('div', {},
    h('span', { class: 'badge state-failed' }, `${s.attempts} failed attempt(s)`), ' ',
    `next at ${when(s.next_attempt_at)}`,
    s.last_error ? h('div', { class: 'error-text' }, s.last_error) : null);
}

function subscriptionRows(list) {
  return list.map((s) => {
    const row = [
      `#${s.id}`,
      h('span', { class: 'strong' }, s.url),
      s.events.map((k) => h('span', { class: 'chip' }, k)),
      String(s.delivered),
      retryState(s),
      when(s.created_at),
      h('div', { class: 'actions' },
        h('a', { class: 'button ghost small', href: `#/webhooks?subscription=${s.id}` }, 'Dead letters'),
        button('Delete', async () => {
          if (!confirm(`Delete the subscription #${s.id} to ${s.url}? Its dead letters go too.`)) return;
          try {
            flash(null);
            await del(`/webhooks/${s.id}`);
            refresh();
          } catch (e) {
            flash(`Deleting subscription #${s.id} failed: ${e.message}`);
          }
        }, { class: 'small danger', dataset: { action: 'delete' } })),
    ];
    row.attrs = { dataset: { webhook: s.id } };
    return row;
  });
}

function deadLetterRows(letters, urls) {
  return letters.map((d) => {
    const resend = button('Re-send', async () => {
      try {
        flash(null);
        await post(`/webhooks/${d.subscription_id}/dead-letters/${d.event.id}/resend`);
        resend.closest('tr')?.remove(); // delivered: no longer a dead letter
        refresh();
      } catch (e) {
        flash(`Re-sending event #${d.event.id} to subscription #${d.subscription_id} failed: ${e.message}`);
      }
    }, { class: 'small', dataset: { action: 'resend' } });
    const cells = [
      [`#${d.subscription_id}`, urls.get(d.subscription_id) ? h('div', { class: 'muted' },
        urls.get(d.subscription_id)) : null],
      [h('span', { class: 'chip' }, d.event.kind), ` #${d.event.id}`],
      when(d.event.at),
      String(d.attempts),
      h('span', { class: 'error-text' }, d.error),
      when(d.at),
      details('body', json(d.event.body), `dead-${d.subscription_id}-${d.event.id}`),
      resend,
    ];
    cells.attrs = { dataset: { deadLetter: `${d.subscription_id}-${d.event.id}` } };
    return cells;
  });
}

let form = null;

export async function render(view) {
  const only = subscriptionFilter();
  const query = only ? `?subscription=${encodeURIComponent(only)}` : '';
  const [list, letters] = await Promise.all([
    get('/webhooks'),
    get(`/webhooks/dead-letters${query}`),
  ]);
  const urls = new Map(list.map((s) => [s.id, s.url]));
  // Keep the same form (what is typed, and a secret just shown) across live refreshes.
  if (!form || !document.body.contains(form)) form = subscribeForm();
  replace(view,
    heading('Webhooks'),
    form,
    h('h2', {}, `Subscriptions (${list.length})`),
    h('div', { id: 'webhooks' },
      table(['', 'URL', 'Events', 'Delivered', 'Retry state', 'Created', 'Actions'],
        subscriptionRows(list), 'No subscription yet: subscribe a URL above.')),
    h('h2', {}, only ? [`Dead letters of #${only} (${letters.length}) `,
      h('a', { href: '#/webhooks' }, 'show all')] : `Dead letters (${letters.length})`),
    h('div', { id: 'dead-letters' },
      table(['Subscription', 'Event', 'Event at', 'Attempts', 'Error', 'Given up', 'Body', ''],
        deadLetterRows(letters, urls), 'No dead letter: every event was delivered or is being retried.')));
  return list.some((s) => s.attempts > 0) ? RETRY_REFRESH_MS : undefined;
}
