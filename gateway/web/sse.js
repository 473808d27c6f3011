// Server-Sent Events over fetch(). EventSource cannot send an Authorization header, so the page
// reads the stream itself and parses it as the HTML standard describes
// (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation).

import { ApiError, errorFromBody, networkError } from './api.js';

/** Incremental parser: feed it text, get back complete events `{type, data, id}`. */
export class SseParser {
  constructor() {
    this.buffer = '';
    this.type = '';
    this.data = [];
    this.lastEventId = '';
    this.retry = null;
  }

  /** Parses `text` (any slice of the stream); returns the events it completes. */
  push(text) {
    this.buffer += text;
    const events = [];
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      if (!match) break;
      // A lone CR at the end may be the first half of CRLF: wait for the next chunk.
      if (match[0] === '\r' && match.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      const event = this.line(line);
      if (event) events.push(event);
    }
    return events;
  }

  line(line) {
    if (line === '') return this.dispatch();
    if (line.startsWith(':')) return null;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'event':
        this.type = value;
        break;
      case 'data':
        this.data.push(value);
        break;
      case 'id':
        if (!value.includes('\0')) this.lastEventId = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
      default:
        break;
    }
    return null;
  }

  dispatch() {
    const type = this.type || 'message';
    const data = this.data;
    this.type = '';
    this.data = [];
    if (data.length === 0) return null;
    return { type, data: data.join('\n'), id: this.lastEventId };
  }
}

/**
 * Streams `GET /jobs/{id}/events` until the server ends it. Calls `onEvent({type, data, id})`
 * for each event; resolves with the last event id seen when the stream ends; rejects with an
 * ApiError for an error answer or a broken connection, or an AbortError through `signal`.
 */
export async function streamJobEvents(token, jobId, { lastEventId = '', signal, onEvent }) {
  const headers = { Authorization: `Bearer ${token}`, Accept: 'text/event-stream' };
  if (lastEventId) headers['Last-Event-ID'] = lastEventId;
  let response;
  try {
    response = await fetch(`/jobs/${encodeURIComponent(jobId)}/events`, {
      headers,
      signal,
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch (error) {
    if (error && error.name === 'AbortError') throw error;
    throw networkError();
  }
  if (!response.ok) {
    const text = await response.text().catch(() => '');
    throw errorFromBody(response.status, text, response.headers.get('Retry-After'));
  }
  if (!response.body) throw new ApiError(0, 'network', 'this browser cannot read streamed responses');

  const parser = new SseParser();
  parser.lastEventId = lastEventId;
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  try {
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (error) {
        if (error && error.name === 'AbortError') throw error;
        throw networkError();
      }
      if (chunk.done) break;
      for (const event of parser.push(chunk.value)) onEvent(event);
    }
  } finally {
    reader.releaseLock();
  }
  return parser.lastEventId;
}
