// The admin API client: the token from session storage on every call, the
// API's error body turned into an ApiError, and the server's clock offset
// (from the Date header) so ages are computed on the daemon's time.

const TOKEN_KEY = 'jobstack.token';
const PREFIX = '/api/v1';

/** An error answer of the API: its HTTP status, code and message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let clockOffsetMs = 0;
const unauthorizedListeners = [];

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** Call `fn(error)` whenever the API answers 401. */
export function onUnauthorized(fn) {
  unauthorizedListeners.push(fn);
}

/** The daemon's current time in milliseconds, as far as we know it. */
export function serverNow() {
  return Date.now() + clockOffsetMs;
}

/** Headers of an authenticated call. */
export function authHeaders(extra = {}) {
  return { ...extra, Authorization: `Bearer ${token.get() ?? ''}` };
}

async function errorOf(response) {
  let code = 'http_' + response.status;
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code ?? code;
      message = body.error.message ?? message;
    }
  } catch {
    // Not the API's JSON error body (a proxy's page): keep the status line.
  }
  return new ApiError(response.status, code, message);
}

/**
 * Call `method path` (below /api/v1). `body` is sent as JSON unless it is a
 * Blob/File (sent as is). Resolves to the parsed JSON answer, or null when
 * the answer has no body (204 No Content).
 */
export async function api(method, path, body) {
  const init = { method, headers: authHeaders() };
  if (body instanceof Blob) {
    init.body = body;
    init.headers['Content-Type'] = 'application/wasm';
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  let response;
  try {
    response = await fetch(PREFIX + path, init);
  } catch (e) {
    throw new ApiError(0, 'unreachable', `the daemon cannot be reached: ${e.message}`);
  }
  const date = Date.parse(response.headers.get('Date') ?? '');
  if (!Number.isNaN(date)) clockOffsetMs = date - Date.now();
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401) unauthorizedListeners.forEach((fn) => fn(error));
    throw error;
  }
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/** Shorthands. */
export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body);
export const put = (path, body) => api('PUT', path, body);
export const del = (path) => api('DELETE', path);
