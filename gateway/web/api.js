// The gateway's public REST API as the page uses it, and plain-words descriptions of its errors.
//
// Every request is same-origin with `credentials: 'omit'`: the session is a bearer token held by
// the page, never a cookie, and a 401 with a Basic challenge (wrong password) never opens the
// browser's own login dialog.

/** An error answer of the API (`{error, message}`), or a network failure (`status` 0). */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }

  get sessionExpired() {
    return this.status === 401 && this.code !== 'invalid_credentials';
  }
}

export function networkError() {
  return new ApiError(0, 'network', 'the server cannot be reached');
}

/** Seconds from a Retry-After header (seconds or an HTTP date), or null. */
export function parseRetryAfter(value) {
  if (!value) return null;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? null : Math.max(1, Math.ceil((at - Date.now()) / 1000));
}

/** Builds an ApiError from a status, a response body (text) and a Retry-After header. */
export function errorFromBody(status, bodyText, retryAfterHeader) {
  let code = `http_${status}`;
  let message = '';
  try {
    const body = JSON.parse(bodyText);
    if (body && typeof body === 'object') {
      code = typeof body.error === 'string' ? body.error : code;
      message = typeof body.message === 'string' ? body.message : '';
    }
  } catch {
    // Not JSON (a proxy's error page, say): the status alone will have to do.
  }
  return new ApiError(status, code, message, parseRetryAfter(retryAfterHeader));
}

async function errorFromResponse(response) {
  const text = await response.text().catch(() => '');
  return errorFromBody(response.status, text, response.headers.get('Retry-After'));
}

export function formatBytes(bytes) {
  if (!Number.isFinite(bytes) || bytes < 0) return '';
  if (bytes < 1000) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = -1;
  do {
    value /= 1000;
    unit += 1;
  } while (value >= 1000 && unit < units.length - 1);
  const digits = value >= 100 || Number.isInteger(value) ? 0 : 1;
  return `${value.toFixed(digits)} ${units[unit]}`;
}

function formatWait(seconds) {
  if (seconds < 90) return `${seconds} second${seconds === 1 ? '' : 's'}`;
  const minutes = Math.ceil(seconds / 60);
  return `${minutes} minutes`;
}

function sentence(text) {
  const trimmed = (text || '').trim();
  if (!trimmed) return '';
  const capitalised = trimmed[0].toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(capitalised) ? capitalised : `${capitalised}.`;
}

/** "… limit of 1048576 bytes" → "… limit of 1048576 bytes (1 MB)". */
function withReadableSizes(message) {
  return message.replace(/(\d{4,}) bytes/g, (all, digits) => `${all} (${formatBytes(Number(digits))})`);
}

/**
 * What to tell the user about an error: `{title, detail}` in plain words. `detail` carries the
 * API's own message when it has one.
 */
export function describeError(error) {
  if (!(error instanceof ApiError)) {
    return { title: 'Something went wrong.', detail: sentence(String(error && error.message ? error.message : error)) };
  }
  const detail = withReadableSizes(sentence(error.message));
  switch (error.status) {
    case 0:
      return { title: 'Cannot reach the server.', detail: 'Check your connection and try again.' };
    case 401:
      if (error.code === 'invalid_credentials') {
        return { title: 'Wrong email or password.', detail };
      }
      return { title: 'Your session has expired.', detail: 'Please log in again.' };
    case 404:
      return { title: 'Not found.', detail: detail || 'It may have been deleted.' };
    case 409:
      return { title: 'That did not work.', detail };
    case 413: {
      const limit = /(\d+) bytes/.exec(error.message);
      const title = limit
        ? `This file is too big: the largest upload is ${formatBytes(Number(limit[1]))}.`
        : 'This file is too big.';
      return { title, detail };
    }
    case 415:
    case 400:
    case 422:
      return { title: 'Please check what you entered.', detail };
    case 429: {
      const wait = error.retryAfter ? `Try again in ${formatWait(error.retryAfter)}.` : 'Try again later.';
      return { title: `Too many attempts. ${wait}`, detail };
    }
    case 503:
      return {
        title: 'The service is busy or briefly unavailable. Please try again in a moment.',
        detail,
      };
    default:
      if (error.status >= 500) {
        return { title: 'Something went wrong on our side.', detail: 'Please try again.' };
      }
      return { title: `The request failed (HTTP ${error.status}).`, detail };
  }
}

function basicAuth(email, password) {
  // btoa only takes Latin-1: encode the UTF-8 bytes.
  const bytes = new TextEncoder().encode(`${email}:${password}`);
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return `Basic ${btoa(binary)}`;
}

async function send(path, init = {}) {
  let response;
  try {
    response = await fetch(path, { credentials: 'omit', cache: 'no-store', ...init });
  } catch (error) {
    if (error && error.name === 'AbortError') throw error;
    throw networkError();
  }
  if (!response.ok) throw await errorFromResponse(response);
  return response;
}

function authorised(token, headers = {}) {
  return { ...headers, Authorization: `Bearer ${token}` };
}

/** `POST /login` → `{token, expiresAt}` (ms since the epoch, or null). */
export async function login(email, password) {
  const response = await send('/login', {
    method: 'POST',
    headers: { Authorization: basicAuth(email, password), Accept: 'application/json' },
  });
  const body = await response.json();
  const expiresAt = body.expires_at ? Date.parse(body.expires_at) : NaN;
  return { token: body.token, expiresAt: Number.isNaN(expiresAt) ? null : expiresAt };
}

/** `POST /signup`. */
export async function signup(email, password) {
  await send('/signup', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify({ email, password }),
  });
}

/** `GET /jobs`: `{jobs, before}` where `before` pages to older jobs (null at the end). */
export async function listJobs(token, { limit = 20, before = null } = {}) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (before) query.set('before', before);
  const response = await send(`/jobs?${query}`, { headers: authorised(token, { Accept: 'application/json' }) });
  const body = await response.json();
  let next = null;
  if (body.next) {
    // The API's link is absolute on its public base URL; only its cursor is needed here.
    try {
      next = new URL(body.next, location.href).searchParams.get('before');
    } catch {
      next = null;
    }
  }
  return { jobs: Array.isArray(body.jobs) ? body.jobs : [], before: next };
}

/** `GET /jobs/{id}`. */
export async function getJob(token, jobId) {
  const response = await send(`/jobs/${encodeURIComponent(jobId)}`, {
    headers: authorised(token, { Accept: 'application/json' }),
  });
  return response.json();
}

/** `DELETE /jobs/{id}`. */
export async function deleteJob(token, jobId) {
  await send(`/jobs/${encodeURIComponent(jobId)}`, { method: 'DELETE', headers: authorised(token) });
}

/** The file name of a Content-Disposition header (`filename*` preferred), or null. */
export function dispositionFilename(header) {
  if (!header) return null;
  const extended = /filename\*\s*=\s*([^']*)'[^']*'([^;]+)/i.exec(header);
  if (extended) {
    try {
      return decodeURIComponent(extended[2].trim());
    } catch {
      // Fall back to the plain parameter.
    }
  }
  const plain = /filename\s*=\s*("((?:[^"\\]|\\.)*)"|[^;]+)/i.exec(header);
  if (!plain) return null;
  return plain[2] !== undefined ? plain[2].replace(/\\(.)/g, '$1') : plain[1].trim();
}

/** `GET /jobs/{id}/mp3` → `{blob, filename}`. */
export async function downloadMp3(token, jobId, signal) {
  const response = await send(`/jobs/${encodeURIComponent(jobId)}/mp3`, {
    headers: authorised(token, { Accept: 'audio/mpeg' }),
    signal,
  });
  const blob = await response.blob();
  const filename = dispositionFilename(response.headers.get('Content-Disposition')) || 'audio.mp3';
  return { blob, filename };
}

/**
 * `POST /upload` with a real progress report. `quality` is '' (default), 'V0'..'V9' or a CBR
 * bitrate in kbps. Returns `{promise, abort}`; the promise resolves with the 202 body and rejects
 * with an ApiError, or with an Error named 'AbortError' after `abort()`.
 */
export function uploadVideo(token, file, quality, onProgress) {
  const xhr = new XMLHttpRequest();
  const query = new URLSearchParams();
  if (/^V\d$/.test(quality)) query.set('quality', quality);
  else if (/^\d+$/.test(quality)) query.set('bitrate', quality);
  const path = query.size ? `/upload?${query}` : '/upload';

  const promise = new Promise((resolve, reject) => {
    xhr.open('POST', path);
    xhr.setRequestHeader('Authorization', `Bearer ${token}`);
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.responseType = 'text';
    xhr.upload.onprogress = (event) => {
      onProgress({ sent: event.loaded, total: event.lengthComputable ? event.total : file.size });
    };
    xhr.upload.onload = () => onProgress({ sent: file.size, total: file.size, done: true });
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve(JSON.parse(xhr.responseText));
        } catch {
          reject(new ApiError(xhr.status, 'bad_response', 'the server answered in an unexpected way'));
        }
      } else {
        reject(errorFromBody(xhr.status, xhr.responseText, xhr.getResponseHeader('Retry-After')));
      }
    };
    xhr.onerror = () => reject(networkError());
    xhr.onabort = () => {
      const aborted = new Error('the upload was cancelled');
      aborted.name = 'AbortError';
      reject(aborted);
    };
    const form = new FormData();
    form.append('file', file, file.name);
    xhr.send(form);
  });
  return { promise, abort: () => xhr.abort() };
}
