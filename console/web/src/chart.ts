// Hand-drawn SVG time charts: bars (a value per bucket) or lines (several series).

import { fmtClock, fmtNum, s, type Attrs } from './dom';

export interface Point {
  /** Epoch milliseconds. */
  t: number;
  v: number;
}

export interface Series {
  name: string;
  color: string;
  points: Point[];
}

export interface ChartOptions {
  series: Series[];
  /** The time window shown, epoch milliseconds. */
  from: number;
  to: number;
  kind: 'bars' | 'lines';
  /** Width of one bar in milliseconds (bars only). */
  bucketMs?: number;
  /** How a value reads in tooltips, e.g. `events/s`. */
  unit: string;
  /** The drawing's size in SVG units (it scales to its box; text scales with it). */
  width?: number;
  height?: number;
  attrs?: Attrs;
}
const PAD = { left: 48, right: 12, top: 22, bottom: 24 };

/** The smallest 1, 2 or 5 × 10^k at or above `value`: a grid step that reads well. */
function niceStep(value: number): number {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

function fmtValue(v: number): string {
  if (v >= 1000) return fmtNum(Math.round(v));
  if (v >= 10 || Number.isInteger(v)) return String(Math.round(v * 10) / 10);
  return v.toFixed(2);
}

export function timeChart(options: ChartOptions): SVGSVGElement {
  const { series, from, to, kind, unit } = options;
  const W = options.width ?? 640;
  const H = options.height ?? 190;
  const span = Math.max(1, to - from);
  const values = series.flatMap((one) => one.points.map((p) => p.v));
  const step = niceStep((Math.max(0, ...values) * 1.05) / 4);
  const top = step * 4;
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const x = (t: number): number => PAD.left + ((t - from) / span) * plotW;
  const y = (v: number): number => PAD.top + plotH - (v / top) * plotH;

  const svg = s('svg', {
    ...options.attrs,
    class: 'chart',
    viewBox: `0 0 ${W} ${H}`,
    role: 'img',
    'data-max': String(Math.max(0, ...values)),
  });

  // Grid and y axis.
  for (let i = 0; i <= 4; i += 1) {
    const v = step * i;
    svg.append(
      s('line', { class: 'grid-line', x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }),
      s('text', { class: 'axis', x: PAD.left - 6, y: y(v) + 3.5, 'text-anchor': 'end' }, fmtValue(v)),
    );
  }
  // Time axis: a label a minute (or every fifth of the window when it is short).
  const every = span >= 4 * 60_000 ? 60_000 : Math.max(1000, Math.round(span / 5 / 1000) * 1000);
  for (let t = Math.ceil(from / every) * every; t <= to; t += every) {
    svg.append(
      s('line', { class: 'tick', x1: x(t), x2: x(t), y1: PAD.top + plotH, y2: PAD.top + plotH + 4 }),
      s('text', { class: 'axis', x: x(t), y: H - 6, 'text-anchor': 'middle' }, fmtClock(t)),
    );
  }
  svg.append(s('line', { class: 'axis-line', x1: PAD.left, x2: W - PAD.right, y1: y(0), y2: y(0) }));

  if (values.length === 0) {
    svg.append(s('text', { class: 'chart-empty', x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'no samples yet'));
    return svg;
  }

  if (kind === 'bars') {
    const bucketW = Math.max(1, ((options.bucketMs ?? 1000) / span) * plotW - 1);
    for (const one of series) {
      for (const p of one.points) {
        if (p.t < from || p.t > to || p.v <= 0) continue;
        const height = y(0) - y(p.v);
        svg.append(
          s(
            'rect',
            {
              class: 'bar',
              x: x(p.t),
              y: y(p.v),
              width: bucketW,
              height: Math.max(1, height),
              fill: one.color,
              'data-value': p.v,
            },
            s('title', null, `${fmtClock(p.t)} UTC — ${fmtValue(p.v)} ${unit}`),
          ),
        );
      }
    }
  } else {
    for (const one of series) {
      const points = one.points.filter((p) => p.t >= from && p.t <= to);
      if (points.length === 0) continue;
      svg.append(
        s('polyline', {
          class: 'line',
          points: points.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(' '),
          stroke: one.color,
          'data-series': one.name,
        }),
      );
      const last = points[points.length - 1]!;
      svg.append(
        s(
          'circle',
          { cx: x(last.t), cy: y(last.v), r: 3, fill: one.color },
          s('title', null, `${one.name}: ${fmtValue(last.v)} ${unit} at ${fmtClock(last.t)} UTC`),
        ),
      );
    }
  }

  // Legend, top right.
  if (series.length > 1) {
    let lx = W - PAD.right;
    for (const one of [...series].reverse()) {
      const label = s('text', { class: 'legend', x: lx, y: 12, 'text-anchor': 'end' }, one.name);
      lx -= one.name.length * 7 + 6;
      svg.append(label, s('rect', { x: lx - 10, y: 4, width: 10, height: 10, rx: 2, fill: one.color }));
      lx -= 22;
    }
  }
  return svg;
}
