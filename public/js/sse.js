/**
 * Incremental Server-Sent Events parser. EventSource cannot POST, so the playground reads the /v1/ask stream with
 * fetch and feeds the decoded text here; chunks may split lines (even a CRLF pair) anywhere.
 */
export class SseParser {
  constructor() {
    /** @type {string} */
    this.buffer = '';
    /** @type {string[]} */
    this.dataLines = [];
    /** @type {string} */
    this.eventName = '';
  }

  /**
   * @param {string} chunk decoded text as it arrived
   * @returns {Array<{event: string, data: string}>} events completed by this chunk
   */
  push(chunk) {
    this.buffer += chunk;
    /** @type {Array<{event: string, data: string}>} */
    const events = [];
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      if (!match) break;
      // A lone CR at the very end may be the first half of a CRLF that the next chunk completes.
      if (match[0] === '\r' && match.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      const event = this.acceptLine(line);
      if (event) events.push(event);
    }
    return events;
  }

  /**
   * Flushes an event the stream ended without its blank line.
   * @returns {Array<{event: string, data: string}>}
   */
  end() {
    const events = this.push('\n');
    const last = this.acceptLine('');
    if (last) events.push(last);
    return events;
  }

  /**
   * @param {string} line
   * @returns {{event: string, data: string} | undefined}
   */
  acceptLine(line) {
    if (line === '') {
      if (this.dataLines.length === 0) {
        this.eventName = '';
        return undefined;
      }
      const event = { event: this.eventName || 'message', data: this.dataLines.join('\n') };
      this.dataLines = [];
      this.eventName = '';
      return event;
    }
    if (line.startsWith(':')) return undefined;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.eventName = value;
    else if (field === 'data') this.dataLines.push(value);
    return undefined;
  }
}
