// Server-Sent Events over fetch(). The browser's EventSource cannot send an Authorization
// header, so the stream is read as a ReadableStream and parsed here by the rules of the
// HTML standard's event-stream format; after a drop it reconnects with `Last-Event-ID`, and
// the server sends what was missed.

import { ApiError } from "./api.js";

/** Incremental parser: push() text as it arrives, get back the complete events. */
export class EventStreamParser {
  constructor(lastEventId = "") {
    this.lastEventId = lastEventId;
    this.retry = null;
    this.pending = "";
    this.data = [];
    this.type = "";
  }

  push(text) {
    const events = [];
    let buffer = this.pending + text;
    // A chunk may end between "\r" and "\n": keep the "\r" until the next chunk says.
    const keep = buffer.endsWith("\r") ? 1 : 0;
    const lines = buffer.slice(0, buffer.length - keep).split(/\r\n|\r|\n/);
    this.pending = lines.pop() + buffer.slice(buffer.length - keep);
    for (const line of lines) {
      const event = this.line(line);
      if (event) events.push(event);
    }
    return events;
  }

  line(line) {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return null; // a comment: the server's keep-alive
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.type = value;
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
    return null;
  }

  dispatch() {
    const type = this.type || "message";
    const data = this.data;
    this.data = [];
    this.type = "";
    if (data.length === 0) return null;
    return { id: this.lastEventId, type, data: data.join("\n") };
  }
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });

/**
 * A stream that stays open: `open(lastEventId, signal)` makes the request (and returns the
 * Response); every event goes to `onEvent`, every change of state to `onState`
 * ("connecting", "live", "reconnecting", "stopped"). A 4xx answer stops it (the key, the
 * scope or the customer is wrong: trying again will not help); anything else is retried.
 */
export class LiveStream {
  constructor({ open, onEvent, onState }) {
    this.open = open;
    this.onEvent = onEvent;
    this.onState = onState;
    this.controller = new AbortController();
    this.lastEventId = "";
    this.retryMs = 3000;
    // Resolves once the first connection is open (or has failed): events from then on are
    // on the stream, so a page of history read afterwards misses nothing.
    this.ready = new Promise((resolve) => {
      this.markReady = resolve;
    });
  }

  start() {
    this.run().finally(() => this.markReady());
    return this;
  }

  stop() {
    this.controller.abort();
  }

  async run() {
    const { signal } = this.controller;
    let failures = 0;
    while (!signal.aborted) {
      this.onState(failures === 0 ? "connecting" : "reconnecting");
      try {
        const response = await this.open(this.lastEventId, signal);
        if (!response.ok) {
          const error = await ApiError.from(response);
          if (response.status >= 400 && response.status < 500 && response.status !== 429) {
            this.onState("stopped", error);
            return;
          }
          throw error;
        }
        failures = 0;
        this.onState("live");
        this.markReady();
        await this.read(response.body);
      } catch (error) {
        if (signal.aborted) return;
        failures += 1;
        this.onState("reconnecting", error);
      }
      if (signal.aborted) return;
      // The server's `retry:` hint, backing off while it keeps failing (at most a minute).
      this.markReady();
      await sleep(Math.min(this.retryMs * 2 ** Math.min(failures, 5), 60000), signal);
    }
  }

  async read(body) {
    const parser = new EventStreamParser(this.lastEventId);
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        for (const event of parser.push(value)) {
          this.lastEventId = event.id;
          this.onEvent(event);
        }
        if (parser.retry !== null) this.retryMs = parser.retry;
      }
    } finally {
      reader.releaseLock();
    }
  }
}
