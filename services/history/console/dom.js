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

const timeOnly = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateAndTime = new Intl.DateTimeFormat(undefined, {
  weekday: "short",
  day: "numeric",
  month: "numeric",
  hour: "2-digit",
  minute: "2-digit",
});

/** A <time> showing an RFC 3339 instant in the agent's time zone (the time alone if today). */
export function when(iso) {
  if (!iso) return "–";
  const moment = new Date(iso);
  const today = new Date().toDateString() === moment.toDateString();
  const text = (today ? timeOnly : dateAndTime).format(moment);
  return el("time", { datetime: iso, title: moment.toString() }, text);
}

/** "in 5 min", "12 min ago": how far an instant is from now, for the queue. */
export function relative(iso, now = Date.now()) {
  const minutes = Math.round((new Date(iso).getTime() - now) / 60000);
  if (minutes === 0) return "now";
  const span = Math.abs(minutes) < 120 ? `${Math.abs(minutes)} min` : `${Math.round(Math.abs(minutes) / 60)} h`;
  return minutes > 0 ? `in ${span}` : `${span} ago`;
}
