// #/streams?type=order&id=<id>: one aggregate's history with every metadata field and its
// hash chain, whether the chain verifies, and the aggregate's state at any version.

import { get, seg } from '../api';
import {
  badge,
  card,
  empty,
  errorBox,
  fmtTime,
  h,
  idCell,
  jsonBlock,
  mount,
  routeHref,
  shorten,
  type Child,
} from '../dom';
import { navigate, type Page } from '../page';
import type { AggregateStateView, AuditEvent, Json, StreamHistoryPage, StreamVerification } from '../types';

const TYPES = ['order', 'payment', 'inventory', 'customer'];
/** Metadata fields with columns of their own, before the rest. */
const MAIN_METADATA = ['actor', 'correlation_id', 'causation_id'];
const PAGE_SIZE = 200;
const MAX_PAGES = 25;

interface Stream {
  version: number;
  items: AuditEvent[];
  truncated: boolean;
}

async function loadHistory(type: string, id: string, signal: AbortSignal): Promise<Stream> {
  const path = `/audit/streams/${seg(type)}/${seg(id)}/events`;
  const items: AuditEvent[] = [];
  let cursor: string | null = null;
  let version = 0;
  for (let page = 0; page < MAX_PAGES; page += 1) {
    const res: StreamHistoryPage = await get<StreamHistoryPage>(path, { limit: PAGE_SIZE, cursor }, signal);
    items.push(...res.items);
    version = res.version;
    cursor = res.next_cursor;
    if (!cursor) return { version, items, truncated: false };
  }
  return { version, items, truncated: true };
}

function text(value: Json | undefined): string {
  if (value === undefined || value === null) return '';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const INSTANT = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/;

/** A metadata value, compact: instants as UTC times, ids and long values shortened (whole in the title). */
function metaCell(value: Json | undefined): Child {
  const t = text(value);
  if (!t) return h('span', { class: 'muted' }, '—');
  if (INSTANT.test(t)) return h('span', { title: t }, fmtTime(t));
  if (UUID.test(t)) return h('span', { class: 'mono', title: t }, shorten(t, 8));
  return t.length > 24 ? h('span', { class: 'mono', title: t }, shorten(t, 16)) : h('span', { class: 'mono' }, t);
}

/** A link to the global log of the event's flow; a causation id highlights its event there. */
function flowLink(id: string, correlation: string, highlight?: string): HTMLElement {
  return idCell(id, routeHref('log', { correlation_id: correlation, highlight }));
}

function verifyBadge(v: StreamVerification): HTMLElement {
  if (v.ok) {
    return badge('verified', 'ok', {
      'data-testid': 'verify-badge',
      'data-state': 'verified',
      title: `${v.verified} events checked: every link matches`,
    });
  }
  const m = v.first_mismatch;
  const where = m ? `broken at sequence ${m.sequence} (${m.reason.replace(/_/g, ' ')})` : 'broken';
  return badge(where, 'bad', {
    'data-testid': 'verify-badge',
    'data-state': 'broken',
    title: m ? `event ${m.event_id}: expected ${m.expected_hash ?? '—'}, stored ${m.stored_hash ?? '—'}` : '',
  });
}

function historyTable(stream: Stream, brokenAt: number | null): HTMLElement {
  const extraKeys = [...new Set(stream.items.flatMap((e) => Object.keys(e.metadata)))]
    .filter((k) => !MAIN_METADATA.includes(k))
    .sort();
  const hashes = new Map(stream.items.map((e) => [e.sequence, e.hash]));
  const columns = extraKeys.length + 8;
  const body = h('tbody');
  for (const e of stream.items) {
    const correlation = text(e.metadata.correlation_id);
    const causation = text(e.metadata.causation_id);
    const previous = hashes.get(e.sequence - 1) ?? null;
    const detail = h(
      'tr',
      { class: 'detail', hidden: true },
      h(
        'td',
        { colspan: columns },
        h(
          'div',
          { class: 'detail-grid' },
          h('div', null, h('h3', null, 'Payload'), jsonBlock(e.payload)),
          h('div', null, h('h3', null, 'Metadata'), jsonBlock(e.metadata)),
          e.personal_data !== undefined ? h('div', null, h('h3', null, 'Personal data'), jsonBlock(e.personal_data)) : null,
          h(
            'div',
            null,
            h('h3', null, 'Position'),
            jsonBlock({ event_id: e.event_id, event_version: e.event_version, global_position: e.global_position, transaction_id: e.transaction_id, hash: e.hash, previous_hash: previous }),
          ),
        ),
      ),
    );
    const tr = h(
      'tr',
      {
        class: `clickable ${brokenAt === e.sequence ? 'broken' : ''}`,
        'data-testid': 'history-row',
        'data-sequence': e.sequence,
        'data-event-type': e.event_type,
        title: 'Show payload and metadata',
        onclick: (event: Event) => {
          if ((event.target as HTMLElement).closest('a')) return;
          detail.hidden = !detail.hidden;
          tr.classList.toggle('open', !detail.hidden);
        },
      },
      h('td', { class: 'num' }, String(e.sequence)),
      h('td', null, h('span', { class: 'event-type' }, e.event_type)),
      h('td', { class: 'nowrap', title: e.recorded_at }, fmtTime(e.recorded_at)),
      h('td', null, metaCell(e.metadata.actor)),
      h('td', null, correlation ? flowLink(correlation, correlation) : metaCell(undefined)),
      h('td', null, causation ? flowLink(causation, correlation || causation, causation) : metaCell(undefined)),
      extraKeys.map((k) => h('td', null, metaCell(e.metadata[k]))),
      h('td', null, e.hash ? h('span', { class: 'mono', title: e.hash }, shorten(e.hash, 10)) : metaCell(undefined)),
      h('td', null, previous ? h('span', { class: 'mono', title: previous }, shorten(previous, 10)) : metaCell(undefined)),
    );
    body.append(tr, detail);
  }
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: 'grid cells-nowrap', 'data-testid': 'history' },
      h(
        'thead',
        null,
        h(
          'tr',
          null,
          ['seq', 'event type', 'recorded at (UTC)', 'actor', 'correlation id', 'causation id', ...extraKeys.map((k) => k.replace(/_/g, ' ')), 'hash', 'previous hash'].map((label) =>
            h('th', null, label),
          ),
        ),
      ),
      body,
    ),
  );
}

/** A slider over the stream's versions and the state the domain folds at the chosen one. */
function timeTravel(type: string, id: string, version: number, signal: AbortSignal, onShow: (version: number) => void): HTMLElement {
  const output = h('div');
  const label = h('strong', { 'data-testid': 'state-version' }, String(version));
  const slider = h('input', { type: 'range', min: 1, max: version, value: version, step: 1, 'aria-label': 'Version', 'data-testid': 'version-slider' });
  let request = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;

  const show = async (v: number): Promise<void> => {
    const mine = ++request;
    label.textContent = String(v);
    try {
      const view = await get<AggregateStateView>(`/audit/streams/${seg(type)}/${seg(id)}/state`, { version: v }, signal);
      if (mine !== request) return;
      onShow(view.version);
      mount(
        output,
        h('div', { class: 'muted small' }, `after event ${view.version} of ${view.current_version}, recorded ${fmtTime(view.recorded_at)} UTC`),
        jsonBlock(view.state, { 'data-testid': 'state-json' }),
      );
    } catch (error) {
      if (mine === request && !signal.aborted) mount(output, errorBox(error));
    }
  };
  const step = (delta: number) => () => {
    slider.value = String(Math.min(version, Math.max(1, Number(slider.value) + delta)));
    void show(Number(slider.value));
  };
  slider.addEventListener('input', () => {
    label.textContent = slider.value;
    clearTimeout(timer);
    timer = setTimeout(() => void show(Number(slider.value)), 150);
  });
  void show(version);
  return card(
    'State at a version',
    h(
      'div',
      { class: 'slider-row' },
      h('button', { type: 'button', class: 'btn btn-small', onclick: step(-1), title: 'Previous version' }, '◀'),
      slider,
      h('button', { type: 'button', class: 'btn btn-small', onclick: step(1), title: 'Next version' }, '▶'),
      h('span', null, 'version ', label, ` of ${version}`),
    ),
    output,
  );
}

export const streamsPage: Page = async (ctx) => {
  const type = ctx.params.get('type') ?? 'order';
  const id = (ctx.params.get('id') ?? '').trim();

  const typeSelect = h('select', { name: 'type', 'aria-label': 'Aggregate type', 'data-testid': 'stream-type' },
    [...new Set([...TYPES, type])].map((t) => h('option', { value: t, selected: t === type }, t)),
  );
  const idInput = h('input', { name: 'id', class: 'wide mono', placeholder: 'aggregate id (a UUID, or the SKU of inventory)', value: id, required: true, 'data-testid': 'stream-id' });
  const form = h('form', { class: 'toolbar' }, typeSelect, idInput, h('button', { type: 'submit', class: 'btn btn-primary' }, 'Open stream'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    navigate(routeHref('streams', { type: typeSelect.value, id: idInput.value.trim() }));
  });

  const body = h('div');
  mount(ctx.root, h('div', { class: 'page-head' }, h('h1', null, 'Streams')), form, body);
  if (!id) {
    mount(body, empty('Give an aggregate type and id to read its history, verify its hash chain and travel through its versions.'));
    return;
  }

  mount(body, h('div', { class: 'loading' }, 'Loading…'));
  const [historyResult, verifyResult] = await Promise.allSettled([
    loadHistory(type, id, ctx.signal),
    get<StreamVerification>(`/audit/streams/${seg(type)}/${seg(id)}/verify`, undefined, ctx.signal),
  ]);
  if (ctx.signal.aborted) return;
  if (historyResult.status === 'rejected') {
    mount(body, errorBox(historyResult.reason));
    return;
  }
  const stream = historyResult.value;
  const verification = verifyResult.status === 'fulfilled' ? verifyResult.value : null;
  const first = stream.items[0];
  const correlation = first ? text(first.metadata.correlation_id) : '';
  const table = historyTable(stream, verification?.first_mismatch?.sequence ?? null);
  /** Marks the row of the version the state view shows. */
  const markVersion = (version: number): void => {
    for (const tr of table.querySelectorAll<HTMLTableRowElement>('tr[data-sequence]')) {
      tr.classList.toggle('at-version', Number(tr.dataset.sequence) === version);
    }
  };

  mount(
    body,
    h(
      'section',
      { class: 'card stream-head' },
      h('div', null, h('span', { class: 'muted' }, type, ' '), h('span', { class: 'mono strong', 'data-testid': 'stream-id-shown' }, id)),
      h('div', null, 'version ', h('strong', null, String(stream.version)), ` · ${stream.items.length} events`),
      verification ? verifyBadge(verification) : verifyResult.status === 'rejected' ? errorBox(verifyResult.reason) : null,
      correlation ? h('a', { href: routeHref('log', { correlation_id: correlation }) }, 'flow in the global log →') : null,
    ),
    stream.truncated ? h('div', { class: 'alert alert-warn' }, `Showing the first ${stream.items.length} events of ${stream.version}.`) : null,
    card('History', table),
    stream.version > 0 ? timeTravel(type, id, stream.version, ctx.signal, markVersion) : null,
  );
};
