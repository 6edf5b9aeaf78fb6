// The wallboard page: one queue's figures from callback's `GET /v1/wallboard`, live over
// Server-Sent Events, coloured against the queue's goals. Nothing to click once it shows.

import { Api, ApiError } from "./api.js";
import { LiveStream } from "./sse.js";

// The agent console's sign-in in this tab (console.js); the board's own key otherwise.
const CONSOLE_STORED = "ringback.console";
const STORED = "ringback.wallboard";

const $ = (id) => document.getElementById(id);

let board = null;

function minutes(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const whole = Math.floor(seconds / 60);
  return whole >= 60 ? `${Math.floor(whole / 60)} h ${whole % 60} min` : `${whole} min`;
}

function percent(share) {
  return share === null || share === undefined ? "–" : `${Math.round(share * 100)} %`;
}

function level(id, value) {
  const tile = $(id);
  if (value) tile.dataset.level = value;
  else delete tile.dataset.level;
}

// The longest wait is counted on here from its first contact, so it moves every second
// without the server sending anything.
function showLongestWait() {
  const since = board && board.waiting.longest_waiting_since;
  $("longest-wait").textContent = since
    ? minutes(Math.max(0, (Date.now() - Date.parse(since)) / 1000))
    : "–";
}

function show(data) {
  board = data;
  $("board-title").textContent = `Wallboard: ${data.queue}`;
  $("waiting").textContent = String(data.waiting.waiting);
  $("overdue").textContent = String(data.waiting.overdue);
  $("due-next-hour").textContent = String(data.waiting.due_next_hour);
  $("available").textContent = String(data.agents.available);
  $("on-callback").textContent = String(data.agents.on_callback);
  $("on-break").textContent = String(data.agents.on_break);
  $("sla").textContent = percent(data.sla.share);
  $("sla-goal").textContent = `Goal ${percent(data.sla.goal)} · ${data.sla.closed} closed`;
  level("tile-sla", data.sla.verdict);
  $("csat").textContent = data.csat.average === null ? "–" : data.csat.average.toFixed(1);
  $("csat-goal").textContent = data.csat.goal === null ? "" : `Goal ${data.csat.goal}`;
  level("tile-csat", data.csat.verdict);
  $("at-risk").textContent = String(data.promises_at_risk);
  level("tile-overdue", data.waiting.overdue > 0 ? "missed" : null);
  level("tile-risk", data.promises_at_risk > 0 ? "near" : null);
  showLongestWait();
  $("board").hidden = false;
}

const STATES = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  stopped: "Stopped",
};

function start(config, key, queue) {
  const api = new Api(config.callback_url, key);
  $("board-sign-in").hidden = true;
  new LiveStream({
    open: (_lastEventId, signal) =>
      api.send("GET", "/v1/wallboard", { query: { queue }, accept: "text/event-stream", signal }),
    onEvent: (event) => {
      if (event.type === "wallboard") show(JSON.parse(event.data));
    },
    onState: (state, error) => {
      $("board-state").textContent =
        error ? `${STATES[state]}: ${error instanceof ApiError ? error.describe() : error.message}` : STATES[state];
      // A key the service refuses is asked for again, once.
      if (state === "stopped" && error && [401, 403].includes(error.status)) {
        sessionStorage.removeItem(STORED);
        $("board-sign-in").hidden = false;
      }
    },
  }).start();
}

function storedKey() {
  for (const name of [STORED, CONSOLE_STORED]) {
    const stored = JSON.parse(sessionStorage.getItem(name) || "null");
    if (stored && stored.key) return stored.key;
  }
  return "";
}

async function main() {
  const response = await fetch("config.json", { cache: "no-store", credentials: "omit" });
  if (!response.ok) throw await ApiError.from(response);
  const config = await response.json();
  const queue = new URLSearchParams(window.location.search).get("queue") || "default";
  $("board-queue").value = queue;
  $("board-sign-in").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("board-key").value.trim();
    const chosen = $("board-queue").value.trim() || "default";
    sessionStorage.setItem(STORED, JSON.stringify({ key }));
    $("board-key").value = "";
    start(config, key, chosen);
  });
  setInterval(showLongestWait, 1000);
  const key = storedKey();
  if (key) start(config, key, queue);
  else {
    $("board-state").textContent = "Enter a key to show the board";
    $("board-sign-in").hidden = false;
  }
}

main().catch((error) => {
  $("board-state").textContent =
    error instanceof ApiError ? error.describe() : "The wallboard could not start.";
});
