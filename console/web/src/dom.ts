// Small DOM helpers: build elements from a tag, attributes and children, and a few
// components every page uses (badges, ids, JSON blocks, error boxes).

import { ApiError } from './api';

export type Child = Node | string | number | null | undefined | false | Child[];
type AttrValue = string | number | boolean | null | undefined;
type Handler = (event: Event) => void;
export type Attrs = Record<string, AttrValue | Handler>;

function applyAttrs(el: Element, attrs: Attrs | null | undefined): void {
  if (!attrs) return;
  for (const [name, value] of Object.entries(attrs)) {
    if (typeof value === 'function') {
      el.addEventListener(name.replace(/^on/, '').toLowerCase(), value);
    } else if (value === true) {
      el.setAttribute(name, '');
    } else if (value !== false && value !== null && value !== undefined) {
      el.setAttribute(name, String(value));
    }
  }
}

function append(parent: Node, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else if (child instanceof Node) parent.appendChild(child);
    else parent.appendChild(document.createTextNode(String(child)));
  }
}

/** An HTML element: `h('a', { href: '#/log', class: 'x' }, 'text')`; `on…` attributes listen. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs?: Attrs | null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  applyAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** An SVG element, like {@link h}. */
export function s<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs?: Attrs | null,
  ...children: Child[]
): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag);
  applyAttrs(el, attrs);
  append(el, children);
  return el;
}

/** Replaces an element's children. */
export function mount(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  append(parent, children);
}

// --- Formatting -------------------------------------------------------------------------

/** `2026-12-07 16:40:12.123` in UTC (the full value in a title). */
export function fmtTime(ts: string | null | undefined): string {
  if (!ts) return '—';
  const ms = Date.parse(ts);
  if (Number.isNaN(ms)) return ts;
  return new Date(ms).toISOString().replace('T', ' ').replace('Z', '');
}

/** `16:40:12` (UTC) of an epoch in milliseconds. */
export function fmtClock(ms: number): string {
  return new Date(ms).toISOString().slice(11, 19);
}

/** `3 s ago`, `5 min ago`, `in 12 s`. */
export function fmtAgo(ts: string | null | undefined, now = Date.now()): string {
  if (!ts) return '—';
  const ms = Date.parse(ts);
  if (Number.isNaN(ms)) return ts;
  const delta = Math.round((now - ms) / 1000);
  const text = fmtSeconds(Math.abs(delta));
  return delta >= 0 ? `${text} ago` : `in ${text}`;
}

/** A duration in seconds, coarsened: `850 ms`, `12 s`, `4 min 10 s`, `2 h 5 min`. */
export function fmtSeconds(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '—';
  if (seconds < 1 && seconds > 0) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) {
    const m = Math.floor(seconds / 60);
    const rest = Math.round(seconds % 60);
    return rest ? `${m} min ${rest} s` : `${m} min`;
  }
  const hours = Math.floor(seconds / 3600);
  return `${hours} h ${Math.round((seconds % 3600) / 60)} min`;
}

const numberFormat = new Intl.NumberFormat('en-US');

export function fmtNum(n: number | null | undefined): string {
  return n === null || n === undefined ? '—' : numberFormat.format(n);
}

export function fmtRate(perSecond: number | null | undefined): string {
  if (perSecond === null || perSecond === undefined || !Number.isFinite(perSecond)) return '—';
  if (perSecond >= 100) return `${numberFormat.format(Math.round(perSecond))}/s`;
  return `${perSecond.toFixed(perSecond >= 10 ? 1 : 2)}/s`;
}

/** The first 8 characters of an id (UUIDs, hashes). */
export function shorten(id: string, keep = 8): string {
  return id.length > keep + 1 ? `${id.slice(0, keep)}…` : id;
}

/** A hash of the route's query string. */
export function routeHref(path: string, params: Record<string, string | null | undefined> = {}): string {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== '') query.set(key, value);
  }
  const qs = query.toString();
  return `#/${path}${qs ? `?${qs}` : ''}`;
}

// --- Components -------------------------------------------------------------------------

export type Tone = 'ok' | 'warn' | 'bad' | 'info' | 'muted';

export function badge(text: string, tone: Tone, attrs: Attrs = {}): HTMLSpanElement {
  return h('span', { ...attrs, class: `badge badge-${tone}` }, text);
}

const STATUS_TONES: Record<string, Tone> = {
  completed: 'ok',
  accepted: 'ok',
  retried: 'ok',
  refunded: 'info',
  cancelled: 'muted',
  skipped: 'muted',
  superseded: 'muted',
  failed: 'bad',
  rejected: 'bad',
  poison: 'bad',
  parked: 'warn',
  compensating: 'warn',
  refunding: 'warn',
  pending: 'info',
  reserving: 'info',
  authorizing: 'info',
  completing: 'info',
};

/** A badge coloured by what the word means (saga statuses, command statuses, …). */
export function statusBadge(status: string, attrs: Attrs = {}): HTMLSpanElement {
  return badge(status, STATUS_TONES[status] ?? 'muted', attrs);
}

/** A monospace id, shortened, the whole id in its title; a link when `href` is given. */
export function idCell(id: string | null | undefined, href?: string, keep = 8): HTMLElement {
  if (!id) return h('span', { class: 'muted' }, '—');
  const text = shorten(id, keep);
  return href
    ? h('a', { class: 'mono', href, title: id }, text)
    : h('span', { class: 'mono', title: id }, text);
}

export function jsonBlock(value: unknown, attrs: Attrs = {}): HTMLPreElement {
  return h('pre', { ...attrs, class: 'json' }, JSON.stringify(value, null, 2));
}

/** An error as an operator reads it: the problem's title, detail and code. */
export function errorBox(error: unknown): HTMLElement {
  if (error instanceof ApiError) {
    return h(
      'div',
      { class: 'alert alert-bad', role: 'alert', 'data-testid': 'error', 'data-code': error.code ?? '' },
      h('strong', null, error.title),
      error.status ? h('span', { class: 'muted' }, ` (HTTP ${error.status})`) : null,
      error.detail ? h('div', null, error.detail) : null,
      error.code ? h('div', null, h('code', null, error.code)) : null,
    );
  }
  const message = error instanceof Error ? error.message : String(error);
  return h('div', { class: 'alert alert-bad', role: 'alert', 'data-testid': 'error' }, message);
}

export function empty(text: string): HTMLElement {
  return h('div', { class: 'empty' }, text);
}

export function card(title: Child, ...body: Child[]): HTMLElement {
  return h('section', { class: 'card' }, h('h2', null, title), ...body);
}
