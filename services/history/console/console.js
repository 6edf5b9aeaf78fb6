// The ringback agent console: the queue, the customer's timeline, and what to do next.
//
// Plain JavaScript modules, no framework, no build step, no npm: there is nothing to build,
// nothing third-party to audit or keep patched, and the files served are the files in the
// repository. The console is also example code for teams building their own agent front end
// on the REST API, so it is written to be read: every request is an ordinary fetch() against
// a documented endpoint (see `api.js`), the live timeline is SSE read with fetch() (`sse.js`),
// and all API data reaches the page as text (`dom.js`), never as HTML.
//
// History serves this page, so history's API is same-origin; callback's API is named by
// `config.json` and allows this origin through its CORS setting.

import { Api, ApiError } from "./api.js";
import { demandChart, slaChart, todayHours } from "./charts.js";
import { clock, el, fill, relative, row, startOfToday, useTimeZone, when } from "./dom.js";
import { LiveStream } from "./sse.js";

const REFRESH_SECONDS = 15;
// The plan's seats change rarely: the Today chart's capacity is read again after this long.
const CAPACITY_SECONDS = 300;
const QUEUE_LIMIT = 25;
// `GET /v1/queue`'s most. It takes one queue or all: for an agent in some of several queues
// the page reads all and keeps theirs, so reads deep enough to still fill QUEUE_LIMIT.
const TIMELINE_PAGE = 30;
const SLOT_DAYS = 3;
// sessionStorage: the key lives as long as this tab does, and is never kept on the machine.
const STORED = "ringback.console";

const OUTCOME_WORDS = {
  reached: "reached",
  no_answer: "no answer",
  busy: "busy",
  voicemail: "voicemail",
  wrong_number: "wrong number",
  declined: "declined",
};

// A dial's progress (§10), as the agent reads it while it happens.
const DIAL_WORDS = {
  initiated: "Calling your phone…",
  requesting: "Calling your phone…",
  ringing_agent: "Ringing you: answer, then press 1",
  ringing_customer: "Ringing the customer…",
  connected: "Connected",
  ended: "Call ended",
  failed: "The call was not placed",
  unknown: "Not known whether the call was placed: dial again if needed",
};
const RUNNING_DIALS = new Set(["initiated", "requesting", "ringing_agent", "ringing_customer", "connected"]);
const LINE_WORDS = {
  answered: "the customer answered",
  no_answer: "no answer",
  busy: "busy",
  machine: "an answering machine",
  failed: "the number could not be reached",
  canceled: "cancelled",
  agent_not_connected: "you were not connected",
};
const DIAL_POLL_MS = 1000;

const PRESENCE_WORDS = {
  available: "available",
  break: "on a break",
  wrap_up: "wrapping up",
  offline: "offline",
};

// The page is in English, so languages are named in English whatever the browser's locale.
const languageNames = new Intl.DisplayNames(["en"], { type: "language" });

const $ = (id) => document.getElementById(id);

const state = {
  // `config.json`, asked for as the page starts. A sign-in waits for it: the form can be
  // sent before it has arrived (a pasted key and Enter at once), and then had no address.
  config: null,
  callback: null, // Api for callback's service
  history: null, // Api for history (this page's own origin)
  agentId: "",
  agent: null, // the roster's profile of this agent; null when the roster does not know them
  queues: new Map(), // every queue by key, for its name
  myQueues: [], // the keys of the queues that serve this agent
  queueFilter: "", // the queue the lists show; "" for all of the agent's queues
  // Bumped on every presence change the agent makes: a roster read begun before it is stale.
  presenceSeq: 0,
  current: null, // the callback being worked
  dialer: "none", // what places calls: `none` means the agent dials the tel: link by hand
  dialTimer: null,
  proposal: null, // the line's proposed attempt waiting for the agent's word
  customerId: null,
  stream: null,
  timelineCursor: null,
  shownEvents: new Set(),
  timer: null,
  refreshing: false,
  refreshAgain: false,
  slotsLoaded: false,
  capacity: null, // today's slots of every queue, for the Today chart: {callback, from, at, slots}
  profileTimer: null,
  // Bumped whenever the customer pane is cleared: a lookup begun before then is stale.
  customerSeq: 0,
};

// ----------------------------------------------------------------------------- status region

function say(message, kind = "info") {
  const status = $("status");
  status.dataset.kind = kind;
  // Clearing first makes a repeated message (the same error twice) announced again.
  status.textContent = "";
  requestAnimationFrame(() => {
    status.textContent = message;
  });
}

function describeError(error) {
  const text = error instanceof ApiError ? error.describe() : String((error && error.message) || error);
  const reference = error instanceof ApiError && error.requestId ? ` (request ${error.requestId})` : "";
  return `${text}${reference}`;
}

function sayError(error, doing) {
  if (error && error.name === "AbortError") return;
  say(`${doing} failed: ${describeError(error)}`, "error");
}

/** Run `action` with `button` disabled meanwhile, reporting failures in the status region. */
async function busy(button, doing, action) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await action();
  } catch (error) {
    sayError(error, doing);
    return undefined;
  } finally {
    button.removeAttribute("aria-busy");
    button.disabled = false;
    syncControls();
  }
}

/** Enable what the agent may do now: work a callback only while holding its claim. */
function syncControls() {
  const current = state.current;
  const mine = Boolean(current && current.status === "in_progress" && current.agent_id === state.agentId);
  $("keep-claim").disabled = !mine;
  const dial = current && current.dials ? current.dials[0] : null;
  const running = Boolean(dial && RUNNING_DIALS.has(dial.status));
  $("call").hidden = state.dialer === "none";
  $("call").disabled = !mine || running || Boolean(state.proposal);
  $("load-slots").disabled = !mine;
  for (const control of $("outcome-form").elements) control.disabled = !mine;
  $("slot").disabled = !(mine && state.slotsLoaded);
  $("book-slot").disabled = !(mine && state.slotsLoaded);
}

// ----------------------------------------------------------------------------- signing in

async function loadConfig() {
  const response = await fetch("config.json", { cache: "no-store", credentials: "omit" });
  if (!response.ok) throw await ApiError.from(response);
  return response.json();
}

/** Show times in the site's zone, and say once on the page which zone that is. */
function showTimeZone(siteZone) {
  const used = useTimeZone(siteZone);
  const label = $("time-zone");
  label.textContent = used
    ? `Times in ${used}`
    : `Times in this browser's zone, ${Intl.DateTimeFormat().resolvedOptions().timeZone}`;
  label.hidden = false;
}

function historyRoot() {
  // This page is history's `/console/`; history's API is one level up (also behind a proxy
  // that mounts history under a path).
  return new URL("../", document.baseURI).href;
}

/** The roster's profile of `agentId`; null for an agent it does not know (served from every queue). */
async function rosterEntry(api, agentId) {
  try {
    return await api.get(`/v1/agents/${encodeURIComponent(agentId)}`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

function setPresence(api, agentId, status) {
  return api.put(`/v1/agents/${encodeURIComponent(agentId)}/presence`, { status });
}

async function signIn(key, typedId, { quiet = false } = {}) {
  const config = await state.config;
  const callback = new Api(config.callback_url, key);
  const history = new Api(historyRoot(), key);
  // One cheap read on each service proves the key and its scopes before anything is kept;
  // `/v1/me` also says whether the key belongs to one agent, who is then the only one it acts as.
  const [me] = await Promise.all([
    callback.get("/v1/me"),
    callback.get("/v1/queue", { limit: 1 }),
    history.get("/v1/stats", todayRange()),
  ]);
  state.dialer = me.dialer || "none";
  const bound = me.agent_id || "";
  const field = $("agent-id");
  if (!bound && !typedId) {
    field.setAttribute("aria-invalid", "true");
    say("This key does not belong to one agent: enter your agent id to sign in.", "error");
    field.focus();
    return;
  }
  field.removeAttribute("aria-invalid");
  const agentId = bound || typedId;
  let agent = await rosterEntry(callback, agentId);
  let presenceFailure = null;
  // Only a real sign-in makes the agent available: a reload of the tab keeps a break a break.
  if (agent && !quiet) {
    try {
      agent = await setPresence(callback, agentId, "available");
    } catch (error) {
      presenceFailure = error;
    }
  }
  Object.assign(state, { callback, history, agentId, agent, queueFilter: "" });
  sessionStorage.setItem(STORED, JSON.stringify({ key, agentId, bound: Boolean(bound) }));
  $("sign-in").hidden = true;
  $("desk").hidden = false;
  $("whoami").textContent = `Signed in as ${agentId}`;
  $("whoami").hidden = false;
  $("sign-out").hidden = false;
  $("api-key").value = "";
  showPresence();
  if (!quiet) {
    let message = `Signed in as ${agentId}.`;
    if (bound && typedId && typedId !== bound) {
      message = `This key belongs to agent ${bound}, not ${typedId}: signed in as ${bound}.`;
    }
    if (presenceFailure) {
      say(`${message} Setting you available failed: ${describeError(presenceFailure)}`, "error");
    } else {
      say(agent ? `${message} You are ${PRESENCE_WORDS[agent.presence]}.` : message, "ok");
    }
  }
  await refresh();
  state.timer = setInterval(refresh, REFRESH_SECONDS * 1000);
  $("claim-next").focus();
}

const SIGNED_OUT = "Signed out. The key is no longer kept in this tab.";

/**
 * Sign out, going offline first when the roster knows the agent (`leaving`; not when the key
 * was just refused). Going offline is best effort: the agent is signed out either way.
 */
async function signOut(message = SIGNED_OUT, { leaving = true } = {}) {
  clearInterval(state.timer);
  const { callback, agentId, agent } = state;
  let failure = null;
  if (leaving && callback && agent) {
    try {
      await setPresence(callback, agentId, "offline");
    } catch (error) {
      failure = error;
    }
  }
  closeCustomer();
  dropVoicemailPlayers(null);
  sessionStorage.removeItem(STORED);
  Object.assign(state, {
    callback: null,
    history: null,
    agentId: "",
    agent: null,
    myQueues: [],
    queueFilter: "",
    current: null,
    timer: null,
  });
  $("desk").hidden = true;
  $("work").hidden = true;
  $("whoami").hidden = true;
  $("presence-field").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  if (failure) {
    say(`${SIGNED_OUT} Setting you offline failed: ${describeError(failure)}`, "error");
  } else {
    say(message, "ok");
  }
  $("api-key").focus();
}

// ----------------------------------------------------------------------------- presence

/** The presence control shows the roster's word for this agent; hidden off the roster. */
function showPresence() {
  const { agent } = state;
  $("presence-field").hidden = !agent;
  if (agent) $("presence").value = agent.presence;
}

async function changePresence() {
  const select = $("presence");
  const status = select.value;
  state.presenceSeq += 1;
  // Not disabled while waiting: disabling a focused control drops the keyboard's place.
  select.setAttribute("aria-busy", "true");
  try {
    state.agent = await setPresence(state.callback, state.agentId, status);
    say(`You are ${PRESENCE_WORDS[state.agent.presence]}.`, "ok");
  } catch (error) {
    sayError(error, "Changing your presence");
  } finally {
    select.removeAttribute("aria-busy");
    showPresence();
  }
}

// ----------------------------------------------------------------------------- queue and figures

function todayRange() {
  // The site's whole today, as history counts it (the day's figures are in the site's zone
  // too), by the hour for the charts; the hours still to come count nothing yet.
  const from = startOfToday();
  return { from: from.toISOString(), to: endOfDay(from).toISOString(), bucket: "hour" };
}

/** The next midnight after `from` (a day may be 23 or 25 hours long). */
function endOfDay(from) {
  return startOfToday(new Date(from.getTime() + 30 * 3600 * 1000));
}

/** Today's slots of every queue (null: not known), read again every CAPACITY_SECONDS. */
async function todaySlots(callback, queues) {
  const from = startOfToday().toISOString();
  const kept = state.capacity;
  if (kept && kept.callback === callback && kept.from === from && Date.now() - kept.at < CAPACITY_SECONDS * 1000) {
    return kept.slots;
  }
  const to = endOfDay(new Date(from)).toISOString();
  let slots = null;
  try {
    const lists = await Promise.all(queues.map((queue) => callback.get("/v1/slots", { queue: queue.key, from, to })));
    slots = lists.flatMap((list) => list.items);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) throw error;
    // The chart shows demand without capacity rather than failing the whole refresh.
  }
  state.capacity = { callback, from, at: Date.now(), slots };
  return slots;
}

function who(callback) {
  return callback.name ? `${callback.name} (${callback.phone})` : callback.phone;
}

function queueName(key) {
  const queue = state.queues.get(key);
  return queue ? queue.name : key;
}

function languageName(code) {
  try {
    return languageNames.of(code) || code;
  } catch {
    return code; // not a tag Intl knows: the code says it best
  }
}

function languageText(callback) {
  return callback.language_known === false ? "language not known" : languageName(callback.language);
}

/** "kept for you, open to all in 20 min" while an owner holds the callback, else null. */
function ownerText(callback) {
  if (!callback.owner_agent_id || !callback.owner_until) return null;
  if (new Date(callback.owner_until).getTime() <= Date.now()) return null;
  const owner = callback.owner_agent_id === state.agentId ? "you" : callback.owner_agent_id;
  return `kept for ${owner}, open to all ${relative(callback.owner_until)}`;
}

function queueItem(callback, group) {
  const overdue = new Date(callback.sla_deadline).getTime() <= Date.now();
  const details = [
    `due ${relative(callback.due_at)}`,
    overdue ? `deadline passed ${relative(callback.sla_deadline)}` : `deadline ${relative(callback.sla_deadline)}`,
    `${callback.attempt_count} ${callback.attempt_count === 1 ? "try" : "tries"}`,
  ];
  if (callback.contact_count > 1) details.push(`contacted us ${callback.contact_count} times`);
  if (callback.slot_start) details.push("booked slot");
  if (callback.flag) details.push(callback.flag.replaceAll("_", " "));
  if (callback.priority) details.push(`priority ${callback.priority}`);
  const owner = ownerText(callback);
  if (owner) details.push(owner);
  return el(
    "li",
    {
      class: overdue ? "overdue" : null,
      dataset: { testid: "queue-item", callbackId: callback.id, group, queue: callback.queue },
    },
    el("div", { class: "who" }, who(callback)),
    el(
      "div",
      { class: "meta" },
      el("span", { dataset: { testid: "queue-item-queue" } }, `Queue: ${queueName(callback.queue)}`),
      " · ",
      el("span", { dataset: { testid: "queue-item-language" } }, languageText(callback)),
    ),
    el("div", { class: "meta" }, details.join(" · ")),
    callback.message ? el("div", { class: "meta" }, `“${callback.message}”`) : null,
  );
}

function fillList(list, items, render, empty) {
  if (items.length === 0) fill(list, el("li", { class: "empty" }, empty));
  else fill(list, items.map(render));
}

function showQueue(view) {
  const { counts } = view;
  fillList($("queue-overdue"), view.overdue, (c) => queueItem(c, "overdue"), "Nothing overdue.");
  fillList($("queue-due"), view.due, (c) => queueItem(c, "due"), "Nothing due right now.");
  fillList($("queue-later"), view.later, (c) => queueItem(c, "later"), "Nothing booked for later.");
  const shown = (n, list) => (n > list.length ? `(${list.length} of ${n})` : `(${n})`);
  $("count-overdue").textContent = shown(counts.overdue, view.overdue);
  $("count-due").textContent = shown(counts.due, view.due);
  $("count-later").textContent = shown(counts.later, view.later);
  $("figure-waiting").textContent = String(counts.overdue + counts.due + counts.later);
  $("figure-overdue").textContent = String(counts.overdue);
  $("figure-in-progress").textContent = String(counts.in_progress);
  fill($("queue-updated"), "Updated ", when(view.as_of));
}

function showStats(stats) {
  const { sla } = stats;
  $("figure-sla").textContent =
    sla.share === null
      ? "none closed yet"
      : `${Math.round(sla.share * 100)} % (${sla.reached_within} of ${sla.closed})`;
  $("figure-completed").textContent = String(stats.callbacks.completed);
}

function showCharts(stats, slots) {
  const hours = todayHours(stats, slots);
  fill($("chart-demand-box"), demandChart(hours));
  fill($("chart-sla-box"), slaChart(hours));
}

function showMine(items) {
  fillList(
    $("mine"),
    items,
    (callback) =>
      el(
        "li",
        { dataset: { testid: "my-callback", callbackId: callback.id } },
        el("div", { class: "who" }, who(callback)),
        el("div", { class: "meta" }, "claim runs out ", when(callback.lease_expires_at)),
        el(
          "button",
          {
            type: "button",
            "aria-label": `Open callback for ${who(callback)}`,
            dataset: { testid: "open-callback", callbackId: callback.id },
          },
          "Open",
        ),
      ),
    "No callbacks claimed by you.",
  );
}

/** Take in the queues and the roster's word on this agent, read afresh on every refresh. */
function showRoster(queues, agent, presenceFresh) {
  state.queues = new Map(queues.map((queue) => [queue.key, queue]));
  // The agent's own change, made while this was read, is newer than what was read.
  if (agent && state.agent && !presenceFresh) agent = { ...agent, presence: state.agent.presence };
  state.agent = agent;
  state.myQueues = agent ? agent.queues : queues.map((queue) => queue.key);
  if (!state.myQueues.includes(state.queueFilter)) state.queueFilter = "";
  showPresence();

  const note = $("roster-note");
  if (!agent) {
    note.textContent = "You are not on the team's roster, so every queue serves you.";
  } else if (state.myQueues.length === 0) {
    note.textContent = "You are in no queue yet: ask an admin to add you to one.";
  }
  note.hidden = Boolean(agent && state.myQueues.length > 0);

  const filter = $("queue-filter");
  const options = [["", "All my queues"], ...state.myQueues.map((key) => [key, queueName(key)])];
  const shown = [...filter.options].map((option) => [option.value, option.textContent]);
  // Rebuilt only when it changed: rebuilding closes the list under an agent choosing from it.
  if (JSON.stringify(shown) !== JSON.stringify(options)) {
    fill(filter, options.map(([value, label]) => el("option", { value }, label)));
  }
  filter.value = state.queueFilter;
}

function showMyQueues(views) {
  fillList(
    $("my-queues"),
    state.myQueues,
    (key) => {
      const { counts } = views.get(key);
      const waiting = counts.overdue + counts.due + counts.later;
      return el(
        "li",
        {
          "aria-current": key === state.queueFilter ? "true" : null,
          dataset: { testid: "queue-summary", queue: key },
        },
        el("div", { class: "who" }, queueName(key)),
        el(
          "div",
          { class: "meta" },
          el("span", { dataset: { testid: "queue-summary-waiting" } }, `${waiting} waiting`),
          " · ",
          el("span", { dataset: { testid: "queue-summary-overdue" } }, `${counts.overdue} overdue`),
        ),
      );
    },
    "No queues.",
  );
}

// What an agent in no queue sees: nothing to claim.
function emptyView() {
  const counts = { overdue: 0, due: 0, later: 0, in_progress: 0 };
  return { as_of: new Date().toISOString(), counts, overdue: [], due: [], later: [] };
}

async function refreshOnce() {
  const { callback, history, agentId } = state;
  const presenceSeq = state.presenceSeq;
  const [queues, agent] = await Promise.all([callback.get("/v1/queues"), rosterEntry(callback, agentId)]);
  if (callback !== state.callback) return; // signed out meanwhile
  showRoster(queues, agent, presenceSeq === state.presenceSeq);
  const filter = state.queueFilter;
  const mine = state.myQueues;
  const servesAll = queues.every((queue) => mine.includes(queue.key));
  // The agent's queues in one view, in the server's claim order (`queue` repeats).
  const across = servesAll ? {} : { queue: mine };
  const [perQueue, everything, stats, claimed] = await Promise.all([
    // One small read per queue for its totals (the chosen queue's is the list shown).
    Promise.all(
      mine.map((key) => callback.get("/v1/queue", { queue: key, limit: key === filter ? QUEUE_LIMIT : 1 })),
    ),
    filter || mine.length === 0
      ? null
      : callback.get("/v1/queue", { ...across, limit: QUEUE_LIMIT }),
    history.get("/v1/stats", todayRange()),
    callback.get("/v1/callbacks", { status: "in_progress", agent_id: agentId }),
  ]);
  const slots = await todaySlots(callback, queues);
  if (callback !== state.callback) return;
  const views = new Map(mine.map((key, i) => [key, perQueue[i]]));
  showMyQueues(views);
  if (filter) showQueue(views.get(filter));
  else showQueue(everything || emptyView());
  showStats(stats);
  showCharts(stats, slots);
  showMine(claimed.items);
  if (state.current) await refreshCurrent();
  if (state.current && !state.customerId) await findCustomer(state.current.phone);
}

async function refresh() {
  if (!state.callback) return;
  // Asked again meanwhile (the filter changed): run once more after this one, so the page
  // ends up showing what was last asked for.
  if (state.refreshing) {
    state.refreshAgain = true;
    return;
  }
  state.refreshing = true;
  try {
    do {
      state.refreshAgain = false;
      await refreshOnce();
    } while (state.refreshAgain && state.callback);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      const message = `Signed out: the key was refused (${error.describe()}). Sign in again.`;
      await signOut(message, { leaving: false });
    } else {
      sayError(error, "Refreshing the queue");
    }
  } finally {
    state.refreshing = false;
  }
}

// ----------------------------------------------------------------------------- the current callback

async function claimNext() {
  let claimed;
  try {
    claimed = await state.callback.post("/v1/queue/claim", { agent_id: state.agentId });
  } catch (error) {
    if (!(error instanceof ApiError && error.slug === "agent-not-available")) throw error;
    // The roster may have changed since the last refresh (an admin added the agent).
    await refresh();
    const presence = PRESENCE_WORDS[error.problem.presence] || "not available";
    say(`You are ${presence}: set your presence to Available to claim.`, "error");
    if (!$("presence-field").hidden) $("presence").focus();
    return;
  }
  if (claimed === null) {
    say("Nothing is due right now. The queue refreshes by itself.", "info");
    return;
  }
  say(`Claimed: call ${who(claimed)}.`, "ok");
  await openCallback(claimed);
  await refresh();
}

async function openCallback(callback) {
  const changed = !state.current || state.current.id !== callback.id;
  state.current = callback;
  showCurrent(callback);
  $("work").hidden = false;
  if (changed) {
    $("outcome-form").reset();
    resetSlots();
    await findCustomer(callback.phone);
  }
  $("work-title").focus();
}

// What a later contact said (anyone who knows the number can send one): shown, marked, never
// mistaken for the customer's own details.
function unverifiedRow(unverified) {
  if (!unverified) return null;
  const parts = [unverified.name, unverified.email, unverified.message && `“${unverified.message}”`];
  return row(
    "Given on a later contact, unverified",
    parts.filter(Boolean).join(" · "),
    "callback-unverified",
  );
}

function showCurrent(callback) {
  const mineStill = callback.status === "in_progress" && callback.agent_id === state.agentId;
  const phone = el("a", { href: `tel:${callback.phone}`, dataset: { testid: "call-phone" } }, callback.phone);
  fill(
    $("callback-details"),
    row("Customer", callback.name || "name not given", "callback-name"),
    row("Phone", phone),
    callback.email ? row("Email", callback.email) : null,
    row("Queue", queueName(callback.queue), "callback-queue"),
    row(
      "Language",
      callback.language_known === false
        ? `language not known (${languageName(callback.language)} assumed)`
        : languageName(callback.language),
      "callback-language",
    ),
    callback.priority ? row("Priority", String(callback.priority)) : null,
    ownerText(callback) ? row("Owner", ownerText(callback)) : null,
    row("Status", callback.status.replaceAll("_", " "), "callback-status"),
    callback.message ? row("Message", callback.message, "callback-message") : null,
    ...voicemailRows(callback),
    unverifiedRow(callback.unverified),
    row("First contact", when(callback.first_contact_at)),
    row("SLA deadline", when(callback.sla_deadline)),
    callback.slot_start ? row("Booked slot", when(callback.slot_start)) : null,
    row("Tries so far", String(callback.attempt_count)),
    row("Contacts", String(callback.contact_count)),
    mineStill ? row("Claim runs out", when(callback.lease_expires_at), "lease-expires") : null,
  );
  if (!mineStill) resetSlots();
  showDial(callback);
  syncControls();
}

// The open callback's voicemails, and their players by voicemail id. The callback's details
// are drawn again on every change (Keep claim, each step of a dial): the same <audio> moves
// into the new row, so a message being listened to plays on instead of turning back into a
// Play button. Only the callback's detail lists its voicemails; the answers to a kept claim,
// an outcome or a booking do not, and the ones known are shown again.
const voicemailPlayers = { callbackId: null, voicemails: [], byId: new Map() };

/** Stop and free the players of any callback other than `callbackId` (null: all of them). */
function dropVoicemailPlayers(callbackId) {
  if (voicemailPlayers.callbackId === callbackId) return;
  for (const audio of voicemailPlayers.byId.values()) {
    audio.pause();
    URL.revokeObjectURL(audio.src);
  }
  voicemailPlayers.byId.clear();
  voicemailPlayers.voicemails = [];
  voicemailPlayers.callbackId = callbackId;
}

function voicemailRows(callback) {
  dropVoicemailPlayers(callback.id);
  if (callback.voicemails) voicemailPlayers.voicemails = callback.voicemails;
  return voicemailPlayers.voicemails.map((voicemail) => voicemailRow(callback.id, voicemail));
}

// A voicemail the caller left (§11). An <audio src> cannot send the agent's key, so "Play"
// fetches the recording through callback with it and plays the bytes from a blob: URL.
function voicemailRow(callbackId, voicemail) {
  const cell = el(
    "span",
    {},
    when(voicemail.occurred_at),
    voicemail.duration === null ? "" : ` (${voicemail.duration} s)`,
    " ",
  );
  const kept = voicemailPlayers.byId.get(voicemail.id);
  // Erased meanwhile: the recording is no longer to be heard.
  if (kept && !voicemail.audio_url) kept.pause();
  if (kept && voicemail.audio_url) {
    cell.append(kept);
  } else if (voicemail.audio_url) {
    const play = el(
      "button",
      { type: "button", dataset: { testid: "voicemail-play", voicemail: voicemail.id } },
      "Play",
    );
    play.addEventListener("click", async () => {
      play.disabled = true;
      try {
        const response = await state.callback.send("GET", voicemail.audio_url, { accept: "audio/*" });
        if (!response.ok) throw await ApiError.from(response);
        const blob = await response.blob();
        // Another callback was opened while the recording came: it is not this one's any more.
        if (voicemailPlayers.callbackId !== callbackId) return;
        // The details may have been drawn again meanwhile: the button to replace is the new one.
        const shown = play.isConnected
          ? play
          : $("callback-details").querySelector(`button[data-voicemail="${CSS.escape(voicemail.id)}"]`);
        if (!shown) return;
        const audio = el("audio", { controls: true, autoplay: true });
        audio.src = URL.createObjectURL(blob);
        voicemailPlayers.byId.set(voicemail.id, audio);
        shown.replaceWith(audio);
      } catch (error) {
        play.disabled = false;
        sayError(error, "Playing the voicemail");
      }
    });
    cell.append(play);
  }
  return row("Voicemail", cell, "callback-voicemail");
}

// The latest dial's progress, and the outcome the line proposes once it ended.
function showDial(callback) {
  const dial = callback.dials ? callback.dials[0] : null;
  const progress = $("dial-progress");
  if (dial) {
    let words = DIAL_WORDS[dial.status] || dial.status;
    if (dial.status === "ended" && dial.line_result) words += `: ${LINE_WORDS[dial.line_result] || dial.line_result}`;
    if (dial.status === "failed" && dial.error) words += `: ${dial.error}`;
    progress.textContent = words;
    progress.dataset.status = dial.status;
    progress.hidden = false;
  } else {
    progress.hidden = true;
  }
  const proposal = (callback.attempts || []).find((attempt) => attempt.final === false) || null;
  const changed = (proposal && proposal.id) !== (state.proposal && state.proposal.id);
  state.proposal = proposal;
  const hint = $("proposal");
  if (proposal) {
    hint.textContent = `The line says: ${OUTCOME_WORDS[proposal.outcome] || proposal.outcome}. Confirm it, or choose what really happened.`;
    hint.hidden = false;
    if (changed) $("outcome").value = proposal.outcome;
    $("record-outcome").textContent = "Confirm outcome";
  } else {
    hint.hidden = true;
    $("record-outcome").textContent = "Record outcome";
  }
  if (dial && RUNNING_DIALS.has(dial.status)) watchDial();
}

function watchDial() {
  if (state.dialTimer) return;
  state.dialTimer = setTimeout(async () => {
    state.dialTimer = null;
    if (!state.current) return;
    try {
      await refreshCurrent();
    } catch (error) {
      sayError(error, "Following the call");
    }
  }, DIAL_POLL_MS);
}

async function startDial() {
  const body = { agent_id: state.agentId };
  const reason = $("dial-reason").value.trim();
  if (reason) body.reason = reason;
  try {
    await state.callback.post(`/v1/callbacks/${encodeURIComponent(state.current.id)}/dial`, body);
  } catch (error) {
    if (error instanceof ApiError && error.problem && error.problem.reason === "outside-hours") {
      $("dial-reason-field").hidden = false;
      $("dial-reason").focus();
    }
    throw error;
  }
  $("dial-reason-field").hidden = true;
  $("dial-reason").value = "";
  say("Calling: your phone rings first.", "ok");
  await refreshCurrent();
}

async function refreshCurrent() {
  const { id } = state.current;
  const latest = await state.callback.get(`/v1/callbacks/${encodeURIComponent(id)}`);
  // The agent may have claimed or opened another one meanwhile: this answer is stale then.
  if (!state.current || state.current.id !== id) return;
  const wasMine = state.current.status === "in_progress" && state.current.agent_id === state.agentId;
  state.current = latest;
  showCurrent(latest);
  if (wasMine && !(latest.status === "in_progress" && latest.agent_id === state.agentId)) {
    say(`This callback is no longer yours: it is ${latest.status.replaceAll("_", " ")}.`, "error");
  }
}

async function recordOutcome() {
  const outcome = $("outcome").value;
  if (!outcome) {
    say("Choose an outcome first.", "error");
    $("outcome").focus();
    return;
  }
  const note = $("note").value.trim();
  const body = { agent_id: state.agentId, outcome };
  if (note) body.note = note;
  const id = encodeURIComponent(state.current.id);
  const result = state.proposal
    ? await state.callback.request("PATCH", `/v1/callbacks/${id}/attempts/${encodeURIComponent(state.proposal.id)}`, {
        body: { ...body, final: true },
      })
    : await state.callback.post(`/v1/callbacks/${id}/attempts`, body);
  state.proposal = null;
  const after = result.callback;
  let next;
  if (after.status === "completed") next = "The callback is completed.";
  else if (after.status === "failed") next = "No more tries: the callback has failed.";
  else next = `Next try ${relative(after.due_at)}.`;
  say(`Recorded: ${OUTCOME_WORDS[outcome]}. ${next}`, "ok");
  $("outcome-form").reset();
  state.current = after;
  showCurrent(after);
  await refresh();
  $("claim-next").focus();
}

async function keepClaim() {
  const renewed = await state.callback.post(
    `/v1/callbacks/${encodeURIComponent(state.current.id)}/lease`,
    { agent_id: state.agentId },
  );
  state.current = renewed;
  showCurrent(renewed);
  say(`Claim kept until ${clock(renewed.lease_expires_at)}.`, "ok");
}

function resetSlots() {
  state.slotsLoaded = false;
  fill($("slot"), el("option", { value: "" }, "Show free slots first"));
  syncControls();
}

async function loadSlots() {
  const now = new Date();
  const to = new Date(now.getTime() + SLOT_DAYS * 24 * 3600 * 1000);
  const slots = await state.callback.get("/v1/slots", {
    from: now.toISOString(),
    to: to.toISOString(),
    language: "en",
  });
  const free = slots.items.filter((slot) => slot.available > 0);
  if (free.length === 0) {
    resetSlots();
    say(`No free slot in the next ${SLOT_DAYS} days.`, "error");
    return;
  }
  fill(
    $("slot"),
    el("option", { value: "" }, "Choose a slot…"),
    free.map((slot) =>
      el("option", { value: slot.id }, `${slot.label} (${slot.available} free)`),
    ),
  );
  state.slotsLoaded = true;
  syncControls();
  say(`${free.length} free slots in the next ${SLOT_DAYS} days.`, "info");
  $("slot").focus();
}

async function bookSlot() {
  const slotId = $("slot").value;
  if (!slotId) {
    say("Choose a slot first.", "error");
    $("slot").focus();
    return;
  }
  const label = $("slot").selectedOptions[0].textContent;
  const booked = await state.callback.post(
    `/v1/callbacks/${encodeURIComponent(state.current.id)}/book`,
    { slot_id: slotId },
  );
  say(`Rebooked: ${label.replace(/ \(\d+ free\)$/, "")}. The customer is told.`, "ok");
  state.current = booked;
  showCurrent(booked);
  await refresh();
  $("claim-next").focus();
}

// ----------------------------------------------------------------------------- the customer

function closeCustomer() {
  if (state.stream) state.stream.stop();
  clearTimeout(state.profileTimer);
  state.customerSeq += 1;
  Object.assign(state, { stream: null, customerId: null, timelineCursor: null });
  state.shownEvents.clear();
  $("customer").hidden = true;
  fill($("timeline"));
  fill($("customer-profile"));
  $("live").textContent = "Live updates: off";
}

async function findCustomer(phone) {
  closeCustomer();
  const seq = state.customerSeq;
  const found = await state.history.get("/v1/customers", { phone });
  if (seq !== state.customerSeq) return;
  $("customer").hidden = false;
  if (found.items.length === 0) {
    // History hears of a contact a moment after callback does; the next refresh looks again.
    fill($("customer-profile"), row("History", "nothing recorded for this number yet"));
    return;
  }
  await openCustomer(found.items[0].id, seq);
}

async function openCustomer(customerId, seq) {
  const profile = await state.history.get(`/v1/customers/${encodeURIComponent(customerId)}`);
  if (seq !== state.customerSeq) return;
  state.customerId = profile.id;
  showProfile(profile);
  // Stream first, then the page of history: an event stored in between is in both and shown
  // once (events are told apart by id).
  state.stream = new LiveStream({
    open: (lastEventId, signal) =>
      state.history.send("GET", "/v1/stream", {
        query: { customer_id: profile.id },
        headers: lastEventId ? { "Last-Event-ID": lastEventId } : {},
        accept: "text/event-stream",
        signal,
      }),
    onEvent: (message) => addLiveEvent(message),
    onState: (liveState, error) => showLiveState(liveState, error),
  }).start();
  await state.stream.ready;
  await loadTimeline();
}

function showProfile(profile) {
  const open = profile.open_callbacks.map((c) => `${c.status.replaceAll("_", " ")}${c.agent_id ? ` (${c.agent_id})` : ""}`);
  const last = Object.entries(profile.last_contact).flatMap(([channel, at], i) => [
    i ? ", " : "",
    `${channel} `,
    when(at),
  ]);
  fill(
    $("customer-profile"),
    row("Name", profile.name || "not known", "customer-name"),
    row("Phones", profile.phones.join(", ") || "–"),
    row("Emails", profile.emails.join(", ") || "–"),
    row("Open callbacks", open.join(", ") || "none"),
    row("Last contact", last.length ? last : "–"),
    profile.erased_at ? row("Erased", when(profile.erased_at)) : null,
  );
}

function timelineItem(event, fresh = false) {
  const actor = event.actor ? `${event.actor.kind}${event.actor.id ? ` ${event.actor.id}` : ""}` : null;
  return el(
    "li",
    { class: fresh ? "new" : null, dataset: { testid: "timeline-event", eventId: event.id, type: event.type } },
    el("div", { class: "what" }, event.summary || event.type.replaceAll("_", " ")),
    el(
      "div",
      { class: "meta" },
      when(event.occurred_at),
      ` · ${event.type.replaceAll("_", " ")} · ${event.channel}, ${event.direction}`,
      actor ? ` · ${actor}` : "",
    ),
  );
}

async function loadTimeline() {
  const customerId = state.customerId;
  const page = await state.history.get(
    `/v1/customers/${encodeURIComponent(customerId)}/timeline`,
    { limit: TIMELINE_PAGE, cursor: state.timelineCursor },
  );
  if (customerId !== state.customerId) return; // another customer was opened meanwhile
  const list = $("timeline");
  for (const event of page.items) {
    if (state.shownEvents.has(event.id)) continue;
    state.shownEvents.add(event.id);
    list.append(timelineItem(event));
  }
  if (list.children.length === 0) list.append(el("li", { class: "empty" }, "No events yet."));
  state.timelineCursor = page.next_cursor;
  $("load-older").hidden = !page.next_cursor;
}

function addLiveEvent(message) {
  let event;
  try {
    event = JSON.parse(message.data);
  } catch {
    return;
  }
  if (!event || typeof event.id !== "string" || state.shownEvents.has(event.id)) return;
  state.shownEvents.add(event.id);
  const list = $("timeline");
  list.querySelector(":scope > .empty")?.remove();
  list.prepend(timelineItem(event, true));
  // "Where it stands" changes with the events: read the profile again once they settle.
  clearTimeout(state.profileTimer);
  state.profileTimer = setTimeout(reloadProfile, 500);
}

async function reloadProfile() {
  const customerId = state.customerId;
  if (!customerId) return;
  try {
    const profile = await state.history.get(`/v1/customers/${encodeURIComponent(customerId)}`);
    if (customerId === state.customerId) showProfile(profile);
  } catch (error) {
    sayError(error, "Reading the customer's profile");
  }
}

function showLiveState(liveState, error) {
  const words = {
    connecting: "connecting…",
    live: "on",
    reconnecting: "reconnecting…",
    stopped: `stopped${error instanceof ApiError ? ` (${error.describe()})` : ""}`,
  };
  $("live").textContent = `Live updates: ${words[liveState] || liveState}`;
  if (liveState === "stopped" && error) sayError(error, "Live updates");
}

// ----------------------------------------------------------------------------- wiring

function wire() {
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    if (!form.reportValidity()) return;
    const button = form.querySelector("button[type=submit]");
    busy(button, "Signing in", () => signIn($("api-key").value.trim(), $("agent-id").value.trim()));
  });
  $("agent-id").addEventListener("input", (e) => e.currentTarget.removeAttribute("aria-invalid"));
  $("sign-out").addEventListener("click", (e) => busy(e.currentTarget, "Signing out", () => signOut()));
  $("presence").addEventListener("change", () => changePresence());
  $("queue-filter").addEventListener("change", (e) => {
    state.queueFilter = e.currentTarget.value;
    refresh();
  });
  $("claim-next").addEventListener("click", (e) => busy(e.currentTarget, "Claiming", claimNext));
  $("refresh").addEventListener("click", (e) => busy(e.currentTarget, "Refreshing", refresh));
  $("keep-claim").addEventListener("click", (e) => busy(e.currentTarget, "Keeping the claim", keepClaim));
  $("call").addEventListener("click", (e) => busy(e.currentTarget, "Calling", startDial));
  $("load-slots").addEventListener("click", (e) => busy(e.currentTarget, "Loading slots", loadSlots));
  $("outcome-form").addEventListener("submit", (e) => {
    e.preventDefault();
    busy($("record-outcome"), "Recording the outcome", recordOutcome);
  });
  $("rebook-form").addEventListener("submit", (e) => {
    e.preventDefault();
    busy($("book-slot"), "Booking", bookSlot);
  });
  $("load-older").addEventListener("click", (e) => busy(e.currentTarget, "Loading older events", loadTimeline));
  $("mine").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-callback-id]");
    if (!button) return;
    const id = button.dataset.callbackId;
    busy(button, "Opening the callback", async () => {
      await openCallback(await state.callback.get(`/v1/callbacks/${encodeURIComponent(id)}`));
    });
  });
}

async function start() {
  wire();
  state.config = loadConfig(); // before any event can run: `wire`'s handlers await it
  try {
    showTimeZone((await state.config).site_timezone);
  } catch (error) {
    sayError(error, "Loading the console's configuration");
    return;
  }
  const stored = JSON.parse(sessionStorage.getItem(STORED) || "null");
  if (stored && stored.key && stored.agentId) {
    // A bound key names the agent itself; the field keeps only what the agent typed.
    const typed = stored.bound ? "" : stored.agentId;
    $("agent-id").value = typed;
    try {
      await signIn(stored.key, typed, { quiet: true });
    } catch (error) {
      // A refused key is forgotten; a service that is down is not the key's fault.
      if (error instanceof ApiError && [401, 403].includes(error.status)) {
        sessionStorage.removeItem(STORED);
      }
      sayError(error, "Signing in again");
    }
  }
}

start();
