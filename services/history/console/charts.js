// The Today panel's charts, drawn as inline SVG built here: the page's policy allows no inline
// styles or third-party scripts, so every shape is an element with attributes and classes
// (console.css colours them), and every number reaches the page as text.

import { clock } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 480;
const HEIGHT = 120;
// Room under the plot for the hour labels, and above it so a full bar's top stays visible.
const BOTTOM = 16;
const TOP = 4;
const PLOT = HEIGHT - BOTTOM - TOP;

function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function canvas(label) {
  return svg("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    role: "img",
    "aria-label": label,
    class: "chart",
  });
}

function hourLabels(node, hours, step) {
  hours.forEach((hour, i) => {
    if (i % 3 !== 0) return;
    // From the hour's left edge, so the first label is not cut off by the chart's edge.
    node.append(svg("text", { x: i * step, y: HEIGHT - 3, class: "axis" }, clock(hour.start)));
  });
}

/**
 * New callbacks per hour as bars, each hour's capacity (seats in its slots) as a mark across
 * its bar. `hours`: [{start, demand, capacity (null: not known)}].
 */
export function demandChart(hours) {
  const step = WIDTH / Math.max(hours.length, 1);
  const top = Math.max(1, ...hours.map((h) => Math.max(h.demand, h.capacity ?? 0)));
  const scale = (value) => (value / top) * PLOT;
  const total = hours.reduce((sum, h) => sum + h.demand, 0);
  const known = hours.filter((h) => h.capacity !== null);
  const seats = known.reduce((sum, h) => sum + h.capacity, 0);
  const over = hours.filter((h) => h.capacity !== null && h.demand > h.capacity).length;
  const summary =
    `New callbacks per hour today: ${total} in all` +
    (known.length ? `, against ${seats} seats; more than capacity in ${over} ${over === 1 ? "hour" : "hours"}.` : ".");
  const node = canvas(summary);
  node.setAttribute("data-testid", "chart-demand");
  hours.forEach((hour, i) => {
    const x = i * step;
    const height = scale(hour.demand);
    const over = hour.capacity !== null && hour.demand > hour.capacity;
    const said =
      `${clock(hour.start)}: ${hour.demand} new` +
      (hour.capacity === null ? "" : `, capacity ${hour.capacity}`);
    node.append(
      svg(
        "rect",
        {
          x: x + step * 0.15,
          y: TOP + PLOT - height,
          width: step * 0.7,
          height,
          class: over ? "bar over" : "bar",
          "data-testid": "demand-bar",
          "data-demand": hour.demand,
        },
        svg("title", {}, said),
      ),
    );
    // An hour without seats has no mark: its line would lie on the axis.
    if (hour.capacity) {
      const y = TOP + PLOT - scale(hour.capacity);
      node.append(
        svg("line", {
          x1: x + step * 0.05,
          x2: x + step * 0.95,
          y1: y,
          y2: y,
          class: "capacity",
          "data-testid": "capacity-mark",
          "data-capacity": hour.capacity,
        }),
      );
    }
  });
  hourLabels(node, hours, step);
  return node;
}

/**
 * The SLA share of the callbacks closed in each hour as a line through the hours that closed
 * any (an hour with none has no share, so the line steps over it), and `goal` as a dashed rule.
 * `hours`: [{start, share (null: none closed), closed, within}].
 */
export function slaChart(hours, goal = null) {
  const step = WIDTH / Math.max(hours.length, 1);
  const y = (share) => TOP + PLOT - share * PLOT;
  const points = hours
    .map((hour, i) => ({ hour, x: i * step + step / 2 }))
    .filter(({ hour }) => hour.share !== null);
  const summary = points.length
    ? `Share reached within the SLA, per hour: ${points
        .map(({ hour }) => `${clock(hour.start)} ${Math.round(hour.share * 100)} %`)
        .join(", ")}.`
    : "Share reached within the SLA, per hour: nothing closed yet today.";
  const node = canvas(summary);
  node.setAttribute("data-testid", "chart-sla");
  for (const share of [0, 0.5, 1]) {
    node.append(svg("line", { x1: 0, x2: WIDTH, y1: y(share), y2: y(share), class: "grid" }));
  }
  if (goal !== null) {
    node.append(svg("line", { x1: 0, x2: WIDTH, y1: y(goal), y2: y(goal), class: "goal" }));
  }
  if (points.length) {
    node.append(
      svg("polyline", {
        points: points.map(({ hour, x }) => `${x},${y(hour.share)}`).join(" "),
        class: "line",
        "data-testid": "sla-line",
        "data-points": points.length,
      }),
    );
    for (const { hour, x } of points) {
      node.append(
        svg(
          "circle",
          { cx: x, cy: y(hour.share), r: 3, class: "point", "data-testid": "sla-point" },
          svg("title", {}, `${clock(hour.start)}: ${hour.within} of ${hour.closed} within the SLA`),
        ),
      );
    }
  }
  hourLabels(node, hours, step);
  return node;
}

/**
 * The hours of `stats` (history's hourly `GET /v1/stats`) with their new callbacks, SLA share,
 * and the seats of `slots` (callback's `GET /v1/slots` items, of every queue) starting in them.
 */
export function todayHours(stats, slots) {
  return stats.buckets.map((bucket, i) => {
    const from = Date.parse(bucket.start);
    const to = Date.parse(bucket.end);
    const inside = slots === null ? null : slots.filter((s) => from <= Date.parse(s.start) && Date.parse(s.start) < to);
    const sla = stats.sla_by_bucket[i] || { share: null, closed: 0, reached_within: 0 };
    return {
      start: bucket.start,
      demand: bucket.callbacks.created,
      capacity: inside === null ? null : inside.reduce((sum, s) => sum + s.capacity, 0),
      share: sla.share,
      closed: sla.closed,
      within: sla.reached_within,
    };
  });
}
