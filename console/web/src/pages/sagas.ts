// #/sagas: the fulfilment flows, failed and stuck ones first, with counts by status, a
// status filter and cursor paging. A row opens the flow's timeline (#/sagas/<order_id>).

import { get } from '../api';
import { badge, empty, errorBox, fmtAgo, fmtNum, fmtTime, h, idCell, mount, routeHref, statusBadge } from '../dom';
import { navigate, poll, type Page } from '../page';
import { SAGA_STATUSES, type FlowSummary, type FlowsResponse } from '../types';

function flowRow(f: FlowSummary): HTMLTableRowElement {
  const href = `#/sagas/${encodeURIComponent(f.order_id)}`;
  return h(
    'tr',
    {
      class: `clickable ${f.status === 'failed' ? 'row-bad' : f.stuck ? 'row-warn' : ''}`,
      'data-testid': `flow-${f.order_id}`,
      'data-status': f.status,
      onclick: (event: Event) => {
        if (!(event.target as HTMLElement).closest('a')) navigate(href);
      },
    },
    h('td', null, h('a', { class: 'mono', href, title: f.order_id }, f.order_id)),
    h('td', null, statusBadge(f.status), f.stuck ? [' ', badge('stuck', 'warn', { title: 'past its deadline or unchanged for too long' })] : null),
    h('td', { class: 'num' }, f.pending_commands > 0 ? badge(String(f.pending_commands), 'info') : h('span', { class: 'muted' }, '0')),
    h('td', { class: 'nowrap', title: f.deadline ?? '' }, f.deadline ? fmtAgo(f.deadline) : h('span', { class: 'muted' }, '—')),
    h('td', { class: 'nowrap', title: f.started_at }, fmtTime(f.started_at)),
    h('td', { class: 'nowrap', title: f.updated_at }, fmtAgo(f.updated_at)),
    h('td', null, idCell(f.payment_id, routeHref('streams', { type: 'payment', id: f.payment_id }))),
    h('td', null, idCell(f.correlation_id, routeHref('log', { correlation_id: f.correlation_id }))),
    h('td', { class: 'error-text', title: f.last_error ?? '' }, f.last_error ?? ''),
  );
}

export const sagasPage: Page = (ctx) => {
  const status = ctx.params.get('status') ?? '';
  const cursor = ctx.params.get('cursor') ?? '';

  const counts = h('div', { class: 'chips', 'data-testid': 'saga-counts' });
  const errorSlot = h('div');
  const list = h('div', { class: 'table-wrap' }, h('div', { class: 'loading' }, 'Loading…'));
  const pager = h('div', { class: 'toolbar' });
  const select = h(
    'select',
    { 'aria-label': 'status', 'data-testid': 'saga-status-filter' },
    h('option', { value: '' }, 'every status'),
    SAGA_STATUSES.map((s) => h('option', { value: s, selected: s === status }, s)),
  );
  select.addEventListener('change', () => navigate(routeHref('sagas', { status: select.value })));

  const orderInput = h('input', { class: 'mono wide', placeholder: 'open an order id…', 'aria-label': 'order id' });
  const openForm = h('form', { class: 'inline' }, orderInput, h('button', { type: 'submit', class: 'btn' }, 'Open'));
  openForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const id = orderInput.value.trim();
    if (id) navigate(`#/sagas/${encodeURIComponent(id)}`);
  });

  mount(
    ctx.root,
    h('div', { class: 'page-head' }, h('h1', null, 'Sagas'), h('span', { class: 'muted' }, 'order fulfilment · failed and stuck first · refreshed every 5 s')),
    counts,
    h('div', { class: 'toolbar' }, select, openForm),
    errorSlot,
    h('section', { class: 'card flush' }, list),
    pager,
  );

  let last = '';
  poll(ctx, 5000, async () => {
    try {
      const res = await get<FlowsResponse>('/console/api/sagas', { status, limit: 50, cursor }, ctx.signal);
      mount(errorSlot);
      const json = JSON.stringify(res);
      if (json === last) return;
      last = json;
      const total = Object.values(res.counts).reduce((n, c) => n + c, 0);
      mount(
        counts,
        h('a', { class: `chip ${status === '' ? 'active' : ''}`, href: routeHref('sagas') }, 'all ', h('strong', null, fmtNum(total))),
        SAGA_STATUSES.map((s) =>
          h(
            'a',
            {
              class: `chip ${s === 'failed' && (res.counts[s] ?? 0) > 0 ? 'chip-alert' : ''} ${status === s ? 'active' : ''}`,
              href: routeHref('sagas', { status: s }),
              'data-testid': `count-${s}`,
              'data-value': res.counts[s] ?? 0,
            },
            `${s} `,
            h('strong', null, fmtNum(res.counts[s] ?? 0)),
          ),
        ),
      );
      mount(
        list,
        res.flows.length === 0
          ? empty(status ? `No ${status} flows.` : 'No flows yet: a placed order starts one.')
          : h(
              'table',
              { class: 'grid', 'data-testid': 'flows' },
              h('thead', null, h('tr', null, ['order', 'status', 'pending', 'deadline', 'started (UTC)', 'updated', 'payment', 'correlation', 'last error'].map((c) => h('th', null, c)))),
              h('tbody', null, res.flows.map(flowRow)),
            ),
      );
      mount(
        pager,
        cursor ? h('a', { class: 'btn', href: routeHref('sagas', { status }) }, '⇤ First page') : null,
        res.next_cursor ? h('a', { class: 'btn', href: routeHref('sagas', { status, cursor: res.next_cursor }), 'data-testid': 'next-page' }, 'Next page →') : null,
      );
    } catch (error) {
      if (!ctx.signal.aborted) mount(errorSlot, errorBox(error));
    }
  });
};
