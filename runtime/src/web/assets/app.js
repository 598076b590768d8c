// The page: sign-in, the hash router (#/tasks, #/tasks/7, #/runs/12, #/webhooks, ...),
// the live event stream, and debounced refreshes of the current view.

import { ApiError, get, onUnauthorized, token } from './api.js';
import { flash, h, replace } from './dom.js';
import { follow } from './events.js';
import * as agents from './agents.js';
import * as form from './form.js';
import * as inventory from './inventory.js';
import * as plugins from './plugins.js';
import * as run from './run.js';
import * as task from './task.js';
import * as tasks from './tasks.js';
import * as webhooks from './webhooks.js';

/** Events arriving closer together than this cause one refresh. */
const REFRESH_DEBOUNCE_MS = 300;

const $ = (id) => document.getElementById(id);
let stream = null;
let refreshTimer = null;
let tickTimer = null;
let rendering = Promise.resolve();

/** The view for the current hash: `{view, nav, args}`. */
function route() {
  const parts = location.hash.replace(/^#\/?/, '').split('?')[0].split('/').filter(Boolean);
  const [a, b, c] = parts;
  if (a === 'tasks' && b === 'new') return { view: form, nav: 'new', args: [null] };
  if (a === 'tasks' && b && c === 'edit') return { view: form, nav: 'tasks', args: [b] };
  if (a === 'tasks' && b) return { view: task, nav: 'tasks', args: [b] };
  if (a === 'runs' && b) return { view: run, nav: 'tasks', args: [b] };
  if (a === 'agents') return { view: agents, nav: 'agents', args: [] };
  if (a === 'inventory') return { view: inventory, nav: 'inventory', args: [] };
  if (a === 'assets' && b) {
    return { view: { render: inventory.renderAsset, live: false }, nav: 'inventory', args: [b] };
  }
  if (a === 'plugins') return { view: plugins, nav: 'plugins', args: [] };
  if (a === 'webhooks') return { view: webhooks, nav: 'webhooks', args: [] };
  return { view: tasks, nav: 'tasks', args: [] };
}

/** Render the current view into a detached node, then swap it in. */
function render({ quiet = false } = {}) {
  rendering = rendering.then(async () => {
    if (!token.get()) return;
    const { view, nav, args } = route();
    for (const a of document.querySelectorAll('#nav a')) {
      a.classList.toggle('active', a.dataset.view === nav);
    }
    if (quiet && view.live === false) return;
    const next = h('div', { class: 'view' });
    let every;
    try {
      // A view returns how soon it wants redrawing, if it changes by itself.
      every = await view.render(next, ...args);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return;
      replace(next, h('p', { class: 'error', role: 'alert' }, e.message));
    }
    const scroll = window.scrollY;
    // Keep what the operator opened (outputs, schemas) across live refreshes.
    for (const open of $('view').querySelectorAll('details[open][data-key]')) {
      const same = [...next.querySelectorAll('details[data-key]')]
        .find((d) => d.dataset.key === open.dataset.key);
      if (same) same.open = true;
    }
    replace($('view'), next);
    if (quiet) window.scrollTo(0, scroll);
    clearTimeout(tickTimer);
    if (every) tickTimer = setTimeout(() => render({ quiet: true }), every);
  });
  return rendering;
}

/** Refresh the current view soon (events come in bursts). */
function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => render({ quiet: true }), REFRESH_DEBOUNCE_MS);
}

function showSignIn(message) {
  clearTimeout(tickTimer);
  stream?.stop();
  stream = null;
  $('nav').hidden = true;
  $('signout').hidden = true;
  $('live').hidden = true;
  $('view').replaceChildren();
  flash(null);
  $('signin').hidden = false;
  $('signin-error').textContent = message ?? '';
  $('signin-error').hidden = !message;
  $('token').focus();
}

function showApp() {
  $('signin').hidden = true;
  $('nav').hidden = false;
  $('signout').hidden = false;
  $('live').hidden = false;
  if (!stream) {
    stream = follow({
      onEvent: refreshSoon,
      onStatus: (up, why) => {
        if (why === 'unauthorized') {
          token.clear();
          showSignIn('Your token was refused by the event stream: sign in again.');
          return;
        }
        $('live').classList.toggle('down', !up);
        $('live').textContent = up ? 'live' : 'offline';
        $('live').title = up ? 'live updates' : `live updates stopped: ${why ?? ''}`;
        if (up) refreshSoon(); // catch up on what happened while down
      },
    });
  }
  render();
}

async function signIn(event) {
  event.preventDefault();
  const value = $('token').value.trim();
  if (!value) return;
  token.set(value);
  try {
    await get('/plugins'); // cheapest admin call: proves the token
  } catch (e) {
    token.clear();
    const message = e.status === 401
      ? `Sign-in refused: ${e.message}. Check the admin token (printed at the daemon's first start).`
      : e.message;
    showSignIn(message);
    return;
  }
  $('token').value = '';
  showApp();
}

onUnauthorized((e) => {
  token.clear();
  showSignIn(`Your token was refused (${e.message}): sign in again.`);
});

$('signin-form').addEventListener('submit', signIn);
$('signout').addEventListener('click', () => {
  token.clear();
  showSignIn(null);
});
window.addEventListener('jobstack:refresh', refreshSoon);
window.addEventListener('hashchange', () => {
  flash(null);
  render();
});

if (token.get()) showApp();
else showSignIn(null);
