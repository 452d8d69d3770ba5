// Line charts in plain SVG for the operator page: no library, no inline style (the page's
// CSP allows its own style sheet only; colours are classes there). Each chart carries its
// text alternative: the SVG is an image titled by the chart's name and described by what
// its series show, and a legend under it gives each series' latest value in words.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 600;
const HEIGHT = 150;
const PAD = { left: 44, right: 8, top: 8, bottom: 20 };

function svg(name, attributes = {}, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

/** A round upper bound for the y axis: 1, 2 or 5 times a power of ten. */
function ceiling(max) {
  if (max <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(max));
  return [1, 2, 5, 10].map((m) => m * power).find((bound) => bound >= max);
}

const format = (value) => (Number.isInteger(value) ? value.toLocaleString() : value.toLocaleString(undefined, { maximumFractionDigits: 2 }));
const clock = (time) => new Date(time).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

/**
 * Draws `series` ([{ label, className, points: [[time ms, value]] }]) from `from` to `to`
 * (ms) into `figure`, replacing what it held; `unit` names the values, `span` the range
 * in words ("the last hour").
 */
export function drawChart(figure, { title, unit, span, from, to, series }) {
  const id = figure.id;
  const values = series.flatMap((s) => s.points.map(([, v]) => v));
  const top = ceiling(Math.max(0, ...values));
  const x = (t) => PAD.left + ((t - from) / Math.max(1, to - from)) * (WIDTH - PAD.left - PAD.right);
  const y = (v) => HEIGHT - PAD.bottom - (v / top) * (HEIGHT - PAD.top - PAD.bottom);

  const summary = series.map((s) => {
    if (s.points.length === 0) return `${s.label}: no data`;
    const vs = s.points.map(([, v]) => v);
    return `${s.label}: now ${format(vs[vs.length - 1])}, lowest ${format(Math.min(...vs))}, highest ${format(Math.max(...vs))}`;
  });
  const chart = svg("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    role: "img",
    "aria-labelledby": `${id}-title ${id}-desc`,
    class: "chart",
  });
  chart.append(
    svg("title", { id: `${id}-title` }, `${title} over ${span}`),
    svg("desc", { id: `${id}-desc` }, values.length === 0 ? `No samples in ${span}.` : `${summary.join("; ")} (${unit}).`),
  );
  for (const v of [0, top / 2, top]) {
    chart.append(svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(v), y2: y(v), class: "grid" }));
    chart.append(svg("text", { x: PAD.left - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" }, format(v)));
  }
  chart.append(svg("text", { x: PAD.left, y: HEIGHT - 4, class: "axis" }, clock(from)));
  chart.append(svg("text", { x: WIDTH - PAD.right, y: HEIGHT - 4, class: "axis", "text-anchor": "end" }, "now"));
  for (const s of series) {
    const points = s.points.filter(([t]) => t >= from && t <= to);
    const group = svg("g", { class: `series ${s.className}`, "data-series": s.label, "data-points": points.length });
    if (points.length > 1) {
      group.append(svg("polyline", { points: points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ") }));
    }
    // The latest point is marked, so a series of one point shows too.
    const last = points[points.length - 1];
    if (last) group.append(svg("circle", { cx: x(last[0]).toFixed(1), cy: y(last[1]).toFixed(1), r: 3 }));
    chart.append(group);
  }

  const legend = document.createElement("ul");
  legend.className = "legend";
  series.forEach((s, n) => {
    const item = document.createElement("li");
    item.className = s.className;
    const last = s.points[s.points.length - 1];
    item.dataset.series = s.label;
    item.dataset.value = last ? String(last[1]) : "";
    item.textContent = `${s.label}: ${last ? format(last[1]) : "–"}`;
    item.title = summary[n];
    legend.append(item);
  });
  const caption = document.createElement("figcaption");
  caption.textContent = `${title} (${unit})`;
  figure.replaceChildren(caption, chart, legend);
}
