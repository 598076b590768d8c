// Plugins view: every uploaded version, and the upload of a .wasm component
// (validated by the daemon; its refusal is shown as the API words it).

import { post, get } from './api.js';
import { details, h, heading, json, refresh, replace, table, when } from './dom.js';

function uploadForm() {
  const file = h('input', { id: 'plugin-file', type: 'file', accept: '.wasm,application/wasm', required: true });
  const status = h('p', { id: 'upload-status', role: 'status', hidden: true });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Upload');
  const form = h('form', { id: 'upload-form', class: 'card upload' },
    h('label', { for: 'plugin-file' }, 'Upload a plugin component (.wasm)'),
    h('div', { class: 'row' }, file, submit), status);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const chosen = file.files?.[0];
    if (!chosen) return;
    submit.disabled = true;
    status.hidden = false;
    status.className = 'muted';
    status.textContent = `Uploading ${chosen.name}…`;
    try {
      const answer = await post('/plugins', chosen);
      status.className = 'ok';
      status.textContent = answer.created
        ? `Uploaded ${answer.name} ${answer.version}.`
        : `${answer.name} ${answer.version} was already uploaded (same bytes).`;
      refresh();
    } catch (e) {
      status.className = 'error';
      status.textContent = `Upload refused: ${e.message}`;
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

let form = null;

export async function render(view) {
  const list = await get('/plugins');
  const rows = list.map((p) => {
    const m = p.manifest ?? {};
    const row = [
      h('span', { class: 'strong' }, p.name),
      p.version,
      h('code', { title: p.sha256 }, p.sha256.slice(0, 16) + '…'),
      m.capabilities?.length
        ? m.capabilities.map((c) => h('span', { class: 'chip' }, c))
        : h('span', { class: 'muted' }, 'none'),
      m.description ?? '',
      h('span', { class: 'nowrap' }, `${Math.round(p.size / 1024)} KiB`),
      h('span', { class: 'nowrap' }, when(p.uploaded_at)),
      m.params_schema ? details('schema', json(m.params_schema), `schema-${p.sha256}`) : '',
    ];
    row.attrs = { dataset: { plugin: p.name } };
    return row;
  });
  // Keep the same form (and its chosen file and message) across live refreshes.
  if (!form || !document.body.contains(form)) form = uploadForm();
  replace(view,
    heading('Plugins'),
    form,
    table(['Name', 'Version', 'SHA-256', 'Capabilities', 'Description', 'Size', 'Uploaded', 'Parameters'],
      rows, 'No plugin uploaded yet.'));
}
