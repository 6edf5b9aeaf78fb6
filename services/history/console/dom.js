// DOM helpers. Everything the APIs return (customer names, notes, summaries) is text written
// by someone outside: it goes into the page through textContent and attributes only and is
// never parsed as HTML, so it cannot become markup or script.

/**
 * Make an element: el("li", {class: "item", dataset: {testid: "x"}}, "text", otherNode).
 * Attribute values and children are always text or nodes, never parsed as HTML.
 */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "dataset") {
      Object.assign(node.dataset, value);
    } else if (name === "class") {
      node.className = value;
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace every child of `node` with `children`. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
}

/** A <div><dt>term</dt><dd>value</dd></div> row for a description list. */
export function row(term, value, testid) {
  return el("div", {}, el("dt", {}, term), el("dd", { dataset: testid ? { testid } : {} }, value));
}

// Times are the site's, not the browser's: an agent in Helsinki whose laptop is set to UTC
// must see 18.31 when the customer was promised 18.31. `config.json` names the zone; until it
// has (or if the browser does not know it), the browser's own zone is used.
let formats = makeFormats(undefined);

function makeFormats(timeZone) {
  return {
    time: new Intl.DateTimeFormat(undefined, { timeZone, hour: "2-digit", minute: "2-digit" }),
    dateAndTime: new Intl.DateTimeFormat(undefined, {
      timeZone,
      weekday: "short",
      day: "numeric",
      month: "numeric",
      hour: "2-digit",
      minute: "2-digit",
    }),
    full: new Intl.DateTimeFormat(undefined, { timeZone, dateStyle: "full", timeStyle: "long" }),
    // Fixed locales for these two: their output is compared and taken apart, not shown.
    // en-CA writes a date as YYYY-MM-DD.
    day: new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" }),
    parts: new Intl.DateTimeFormat("en-GB", {
      timeZone,
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
    }),
  };
}

/**
 * Show every time in `timeZone` (an IANA name) from now on; returns the zone in use, or null
 * if the browser does not know that zone (the browser's own is kept then).
 */
export function useTimeZone(timeZone) {
  try {
    formats = makeFormats(timeZone || undefined);
  } catch {
    return null; // RangeError: a zone this browser's Intl does not have
  }
  return timeZone || null;
}

/** "HH:MM" (in the page's locale) of an instant, in the site's zone. */
export function clock(iso) {
  return formats.time.format(new Date(iso));
}

/** A <time> showing an RFC 3339 instant in the site's time zone (the time alone if today). */
export function when(iso) {
  if (!iso) return "–";
  const moment = new Date(iso);
  const today = formats.day.format(new Date()) === formats.day.format(moment);
  const text = (today ? formats.time : formats.dateAndTime).format(moment);
  return el("time", { datetime: iso, title: formats.full.format(moment) }, text);
}

/** The instant today began in the site's zone (its midnight, whatever the browser's is). */
export function startOfToday(now = new Date()) {
  const [year, month, day] = formats.day.format(now).split("-").map(Number);
  // Midnight as if the zone were UTC, moved by the zone's offset then; once more, for a day
  // whose offset changes (daylight saving time) between UTC midnight and the zone's.
  let guess = Date.UTC(year, month - 1, day);
  for (let i = 0; i < 2; i += 1) guess = Date.UTC(year, month - 1, day) - offsetAt(guess);
  return new Date(guess);
}

/** How far the site's zone is ahead of UTC at an instant, in milliseconds. */
function offsetAt(ms) {
  const parts = Object.fromEntries(formats.parts.formatToParts(new Date(ms)).map((p) => [p.type, p.value]));
  const asUtc = Date.UTC(parts.year, parts.month - 1, parts.day, parts.hour, parts.minute, parts.second);
  return asUtc - Math.floor(ms / 1000) * 1000;
}

/** "in 5 min", "12 min ago": how far an instant is from now, for the queue. */
export function relative(iso, now = Date.now()) {
  const minutes = Math.round((new Date(iso).getTime() - now) / 60000);
  if (minutes === 0) return "now";
  const span = Math.abs(minutes) < 120 ? `${Math.abs(minutes)} min` : `${Math.round(Math.abs(minutes) / 60)} h`;
  return minutes > 0 ? `in ${span}` : `${span} ago`;
}
