// Live updates: GET /api/v1/events read with fetch() and a ReadableStream
// (EventSource cannot send the Authorization header), SSE frames parsed here,
// and a reconnect with ?after=<last id> when the stream drops so no event is
// missed.

import { authHeaders } from './api.js';

/** Wait before reconnecting after a drop, in milliseconds (doubles to the max). */
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 15000;

/**
 * Parse one SSE frame (the lines between blank lines) into
 * `{id, event, data}`; null for a comment-only frame (keep-alive).
 */
export function parseFrame(frame) {
  let id = null;
  let event = 'message';
  const data = [];
  for (const line of frame.split('\n')) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'id') id = value;
    else if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  if (id === null && data.length === 0) return null;
  return { id, event, data: data.join('\n') };
}

/**
 * Follow the event stream until `stop()` is called. `onEvent(event)` gets each
 * parsed event (its `data` decoded from JSON); `onStatus(connected, error)`
 * tells whether the stream is up. A 401 stops for good.
 */
export function follow({ onEvent, onStatus }) {
  let lastId = null;
  let stopped = false;
  let controller = null;
  let retry = RETRY_MIN_MS;

  async function connect() {
    while (!stopped) {
      controller = new AbortController();
      const query = lastId === null ? '' : `?after=${encodeURIComponent(lastId)}`;
      try {
        const response = await fetch(`/api/v1/events${query}`, {
          headers: authHeaders({ Accept: 'text/event-stream' }),
          signal: controller.signal,
          cache: 'no-store',
        });
        if (response.status === 401) {
          onStatus(false, 'unauthorized');
          return;
        }
        if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
        onStatus(true);
        retry = RETRY_MIN_MS;
        await read(response.body);
      } catch (e) {
        if (stopped) return;
        onStatus(false, e.message);
      }
      if (stopped) return;
      onStatus(false, 'reconnecting');
      await new Promise((resolve) => setTimeout(resolve, retry));
      retry = Math.min(retry * 2, RETRY_MAX_MS);
    }
  }

  async function read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const frame = parseFrame(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (!frame) continue;
        if (frame.id !== null) lastId = frame.id;
        let data = frame.data;
        try {
          data = JSON.parse(frame.data);
        } catch {
          // Not JSON: pass the text on.
        }
        onEvent({ id: frame.id, event: frame.event, data });
      }
    }
  }

  connect();
  return {
    stop() {
      stopped = true;
      controller?.abort();
    },
  };
}
