// #/log: the global event log in commit order, with the audit API's filters, paging forward
// with its cursor, and a live tail that follows the cursor every 2 s. Newest events on top.

import { get, type Query } from '../api';
import { empty, errorBox, fmtTime, h, idCell, jsonBlock, mount, routeHref } from '../dom';
import { navigate, poll, type Page } from '../page';
import type { AuditEvent, AuditLogPage } from '../types';

const FILTERS = ['event_type', 'aggregate_type', 'correlation_id', 'actor', 'from', 'to'] as const;
type Filter = (typeof FILTERS)[number];
const AGGREGATE_TYPES = ['order', 'payment', 'inventory', 'customer'];
const PAGE_SIZE = 200;
const MAX_ROWS = 5000;
/** With no filter at all the log opens on the last five minutes (it is read oldest first). */
const DEFAULT_FROM = '5m';

/** `15m`, `-2h`, `1d`: that long ago, as RFC 3339; anything else is passed on as written. */
export function resolveInstant(value: string, now = Date.now()): string {
  const m = /^-?\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)$/i.exec(value.trim());
  if (!m) return value.trim();
  const unit = { s: 1, m: 60, min: 60, h: 3600, d: 86400 }[m[2]!.toLowerCase() as 's' | 'm' | 'min' | 'h' | 'd'];
  return new Date(now - Number(m[1]) * unit * 1000).toISOString();
}

function str(value: unknown): string {
  return typeof value === 'string' ? value : value === undefined || value === null ? '' : JSON.stringify(value);
}

export const logPage: Page = (ctx) => {
  const filters: Partial<Record<Filter, string>> = {};
  for (const name of FILTERS) {
    const value = ctx.params.get(name)?.trim();
    if (value) filters[name] = value;
  }
  const defaulted = Object.keys(filters).length === 0;
  if (defaulted) filters.from = DEFAULT_FROM;
  const highlight = ctx.params.get('highlight') ?? '';
  let tail = ctx.params.get('tail') === '1';

  // --- The filter form ---
  const input = (name: Filter, placeholder: string, cls = '', title = '') =>
    h('input', { name, placeholder, title, value: filters[name] ?? '', class: cls, 'data-testid': `filter-${name}`, 'aria-label': name.replace('_', ' ') });
  const instantHelp = 'An RFC 3339 instant (2026-12-07T16:40:00Z) or a time ago: 30s, 15m, 2h, 1d';
  const fields = {
    event_type: input('event_type', 'event type'),
    correlation_id: input('correlation_id', 'correlation id', 'mono wide'),
    actor: input('actor', 'actor'),
    from: input('from', 'from (e.g. 15m)', 'narrow', instantHelp),
    to: input('to', 'to (e.g. 5m)', 'narrow', instantHelp),
  };
  const aggregateSelect = h(
    'select',
    { name: 'aggregate_type', 'aria-label': 'aggregate type', 'data-testid': 'filter-aggregate_type' },
    h('option', { value: '' }, 'any aggregate'),
    AGGREGATE_TYPES.map((t) => h('option', { value: t, selected: filters.aggregate_type === t }, t)),
  );
  const apply = (overrides: Partial<Record<Filter, string>> = {}): void => {
    const next: Record<string, string> = {
      event_type: fields.event_type.value,
      aggregate_type: aggregateSelect.value,
      correlation_id: fields.correlation_id.value,
      actor: fields.actor.value,
      from: fields.from.value,
      to: fields.to.value,
      ...overrides,
    };
    if (tail) next.tail = '1';
    navigate(routeHref('log', next));
  };
  const form = h(
    'form',
    { class: 'toolbar wrap', 'data-testid': 'log-filters' },
    fields.event_type,
    aggregateSelect,
    fields.correlation_id,
    fields.actor,
    fields.from,
    fields.to,
    h('button', { type: 'submit', class: 'btn btn-primary' }, 'Apply'),
    h('span', { class: 'quick' }, 'since', ['5m', '1h', '24h'].map((range) =>
      h('button', { type: 'button', class: 'btn btn-small', onclick: () => apply({ from: range, to: '' }) }, range),
    ), h('button', { type: 'button', class: 'btn btn-small', onclick: () => apply({ from: '', to: '' }) }, 'all')),
    h('a', { href: '#/log', class: 'small' }, 'clear'),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    apply();
  });

  // --- The table ---
  const items: AuditEvent[] = [];
  const body = h('tbody');
  const status = h('span', { class: 'muted', 'data-testid': 'log-status' });
  const errorSlot = h('div');
  const loadMore = h('button', { type: 'button', class: 'btn', 'data-testid': 'load-more' }, 'Load newer');
  const tailToggle = h('input', { type: 'checkbox', checked: tail, 'data-testid': 'live-tail' });
  const tailDot = h('span', { class: `live-dot ${tail ? 'on' : ''}` });
  const tableWrap = h('div', { class: 'table-wrap' });
  let cursor: string | null = null;
  let atEnd = false;
  let busy = false;

  const columns = ['position', 'recorded at (UTC)', 'aggregate', 'seq', 'event type', 'actor', 'correlation id', 'causation id', 'transaction'];
  const rowFor = (e: AuditEvent, fresh: boolean): HTMLTableRowElement[] => {
    const correlation = str(e.metadata.correlation_id);
    const causation = str(e.metadata.causation_id);
    const detail = h('tr', { class: 'detail', hidden: true }, h('td', { colspan: columns.length },
      h('div', { class: 'detail-grid' }, h('div', null, h('h3', null, 'Payload'), jsonBlock(e.payload)), h('div', null, h('h3', null, 'Metadata'), jsonBlock(e.metadata))),
    ));
    const tr = h(
      'tr',
      {
        class: `clickable ${fresh ? 'fresh' : ''} ${highlight && e.event_id === highlight ? 'highlight' : ''}`,
        'data-testid': 'log-row',
        'data-event-id': e.event_id,
        'data-event-type': e.event_type,
        'data-correlation-id': correlation,
        onclick: (event: Event) => {
          if ((event.target as HTMLElement).closest('a')) return;
          detail.hidden = !detail.hidden;
          tr.classList.toggle('open', !detail.hidden);
        },
      },
      h('td', { class: 'num mono' }, String(e.global_position)),
      h('td', { class: 'nowrap', title: e.recorded_at }, fmtTime(e.recorded_at)),
      h('td', { class: 'nowrap' }, h('span', { class: 'muted' }, e.aggregate_type, ' '), idCell(e.aggregate_id, routeHref('streams', { type: e.aggregate_type, id: e.aggregate_id }), 20)),
      h('td', { class: 'num' }, String(e.sequence)),
      h('td', null, h('span', { class: 'event-type' }, e.event_type)),
      h('td', { class: 'mono' }, str(e.metadata.actor) || '—'),
      h('td', null, idCell(correlation, correlation ? routeHref('log', { correlation_id: correlation }) : undefined)),
      h('td', null, idCell(causation, causation && correlation ? routeHref('log', { correlation_id: correlation, highlight: causation }) : undefined)),
      h('td', { class: 'num mono muted' }, String(e.transaction_id)),
    );
    return [tr, detail];
  };

  const showStatus = (): void => {
    status.textContent = `${items.length} event${items.length === 1 ? '' : 's'}${defaulted ? ' since 5 minutes ago' : ''}, newest first${atEnd ? ' · up to date' : ' · more to load'}`;
    loadMore.toggleAttribute('disabled', atEnd || busy);
    if (items.length === 0) mount(tableWrap, empty('No events match.'));
    else if (!tableWrap.contains(body)) {
      mount(tableWrap, h('table', { class: 'grid', 'data-testid': 'log-table' }, h('thead', null, h('tr', null, columns.map((c) => h('th', null, c)))), body));
    }
  };

  /** Reads forward from the cursor, at most `pages` pages; new events go on top. */
  const forward = async (pages: number, fresh: boolean): Promise<void> => {
    if (busy) return;
    busy = true;
    try {
      const query: Query = { limit: PAGE_SIZE };
      for (const name of FILTERS) {
        const value = filters[name];
        if (value) query[name] = name === 'from' || name === 'to' ? resolveInstant(value) : value;
      }
      for (let page = 0; page < pages; page += 1) {
        const res = await get<AuditLogPage>('/audit/events', { ...query, cursor }, ctx.signal);
        for (const e of res.items) body.prepend(...rowFor(e, fresh));
        items.push(...res.items);
        // On the last page `next_cursor` is null; `resume_cursor` is where a tail goes on.
        cursor = res.next_cursor ?? res.resume_cursor ?? cursor;
        atEnd = res.next_cursor === null;
        if (atEnd) break;
      }
      while (items.length > MAX_ROWS) {
        items.shift();
        body.lastElementChild?.remove();
        body.lastElementChild?.remove();
      }
      mount(errorSlot);
    } catch (error) {
      if (!ctx.signal.aborted) mount(errorSlot, errorBox(error));
    } finally {
      busy = false;
      showStatus();
    }
  };

  loadMore.addEventListener('click', () => void forward(1, true));

  let tailController: AbortController | undefined;
  const startTail = (): void => {
    tailController = new AbortController();
    const signal = AbortSignal.any([ctx.signal, tailController.signal]);
    poll({ ...ctx, signal }, 2000, () => forward(5, true));
  };
  tailToggle.addEventListener('change', () => {
    tail = tailToggle.checked;
    tailDot.classList.toggle('on', tail);
    history.replaceState(null, '', routeHref('log', { ...filters, ...(defaulted ? { from: '' } : {}), highlight, tail: tail ? '1' : '' }));
    if (tail) startTail();
    else tailController?.abort();
  });

  mount(
    ctx.root,
    h('div', { class: 'page-head' }, h('h1', null, 'Global log'), h('span', { class: 'muted' }, 'commit order · times in UTC')),
    form,
    h('div', { class: 'toolbar' }, status, loadMore, h('label', { class: 'toggle' }, tailToggle, tailDot, 'Live tail')),
    errorSlot,
    h('section', { class: 'card flush' }, tableWrap),
  );

  void forward(3, false).then(() => {
    if (highlight) body.querySelector('tr.highlight')?.scrollIntoView({ block: 'center' });
    if (tail && !ctx.signal.aborted) startTail();
  });
};
