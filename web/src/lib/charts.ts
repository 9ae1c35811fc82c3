// Small inline SVG charts (no chart library): bars per bucket, with a title, and the same
// numbers in a visually hidden table for screen readers.

const SVG = "http://www.w3.org/2000/svg";

export interface Bar {
  label: string; // the bucket, e.g. "14:00"
  value: number;
}

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>): SVGElementTagNameMap[K] {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, String(value));
  return element;
}

/** A bar chart of `bars`; `unit` is said after each value in the table and the tooltips. */
export function barChart(title: string, bars: Bar[], unit: string, id: string): HTMLElement {
  const figure = document.createElement("figure");
  figure.className = "chart";
  figure.id = id;
  const caption = document.createElement("figcaption");
  caption.textContent = title;
  const width = 320;
  const height = 110;
  const max = Math.max(1, ...bars.map((b) => b.value));
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height + 16}`, width: "100%", "aria-hidden": "true", focusable: "false" });
  chart.append(svg("line", { x1: 0, y1: height, x2: width, y2: height, stroke: "#6b7280", "stroke-width": 1 }));
  const slot = width / Math.max(bars.length, 1);
  bars.forEach((bar, i) => {
    const barHeight = (bar.value / max) * (height - 4);
    const rect = svg("rect", {
      x: i * slot + slot * 0.15,
      y: height - barHeight,
      width: slot * 0.7,
      height: barHeight,
      fill: "#1d4ed8",
      "data-value": bar.value,
    });
    const tip = svg("title", {});
    tip.textContent = `${bar.label}: ${bar.value} ${unit}`;
    rect.append(tip);
    chart.append(rect);
    if (bars.length <= 12 || i % Math.ceil(bars.length / 8) === 0) {
      const text = svg("text", { x: i * slot + slot / 2, y: height + 12, "font-size": 9, "text-anchor": "middle", fill: "#374151" });
      text.textContent = bar.label;
      chart.append(text);
    }
  });
  const table = document.createElement("table");
  table.className = "visually-hidden";
  const head = table.createTHead().insertRow();
  for (const name of ["When", unit]) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = name;
    head.append(th);
  }
  const body = table.createTBody();
  for (const bar of bars) {
    const row = body.insertRow();
    row.insertCell().textContent = bar.label;
    row.insertCell().textContent = String(bar.value);
  }
  const total = bars.reduce((sum, b) => sum + b.value, 0);
  const summary = document.createElement("p");
  summary.className = "hint";
  summary.textContent = bars.length ? `Total ${Math.round(total * 10) / 10} ${unit}; peak ${max === 1 && total === 0 ? 0 : max}.` : "No data yet.";
  figure.append(caption, chart, summary, table);
  return figure;
}

/** Count items into hourly buckets of today (local time), 00:00 to the current hour. */
export function hourlyBuckets<T>(items: T[], at: (item: T) => string | null, value: (item: T) => number = () => 1, mode: "sum" | "mean" = "sum"): Bar[] {
  const now = new Date();
  const start = new Date(now);
  start.setHours(0, 0, 0, 0);
  const hours = now.getHours() + 1;
  const sums = new Array<number>(hours).fill(0);
  const counts = new Array<number>(hours).fill(0);
  for (const item of items) {
    const when = at(item);
    if (!when) continue;
    const hour = Math.floor((new Date(when).getTime() - start.getTime()) / 3_600_000);
    if (hour < 0 || hour >= hours) continue;
    sums[hour] = (sums[hour] ?? 0) + value(item);
    counts[hour] = (counts[hour] ?? 0) + 1;
  }
  return sums.map((sum, hour) => ({
    label: `${String(hour).padStart(2, "0")}:00`,
    value: mode === "mean" ? (counts[hour] ? Math.round((sum / (counts[hour] ?? 1)) * 10) / 10 : 0) : sum,
  }));
}
