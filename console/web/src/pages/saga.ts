// #/sagas/<order_id>: one fulfilment flow as a timeline of the commands the saga sent and
// the events that answered them, with the flow's status and state. Refreshed every 2 s.

import { get, seg } from '../api';
import { badge, card, errorBox, fmtAgo, fmtTime, h, idCell, jsonBlock, mount, routeHref, statusBadge } from '../dom';
import { poll, type Page } from '../page';
import type { CommandStep, EventStep, FlowDetail, FlowSummary } from '../types';

function fact(label: string, ...value: (Node | string)[]): HTMLElement {
  return h('div', { class: 'fact' }, h('div', { class: 'fact-label' }, label), h('div', { class: 'fact-value' }, ...value));
}

function summary(f: FlowSummary): HTMLElement {
  return h(
    'section',
    { class: 'card facts' },
    fact('status', statusBadge(f.status, { 'data-testid': 'saga-status', 'data-status': f.status }), f.stuck ? badge('stuck', 'warn', { 'data-testid': 'saga-stuck' }) : ''),
    fact('order', idCell(f.order_id, routeHref('streams', { type: 'order', id: f.order_id }), 36)),
    fact('payment', idCell(f.payment_id, routeHref('streams', { type: 'payment', id: f.payment_id }), 36)),
    fact('correlation', idCell(f.correlation_id, routeHref('log', { correlation_id: f.correlation_id }), 36)),
    fact('started', h('span', { title: f.started_at }, `${fmtTime(f.started_at)} UTC`)),
    fact('updated', h('span', { title: f.updated_at }, fmtAgo(f.updated_at))),
    fact('deadline', f.deadline ? h('span', { title: f.deadline }, fmtAgo(f.deadline)) : '—'),
    fact('pending commands', String(f.pending_commands)),
    f.last_error ? fact('last error', h('span', { class: 'error-text' }, f.last_error)) : '',
  );
}

function eventStep(step: EventStep, correlation: string): HTMLElement {
  return h(
    'li',
    { class: 'step step-event', 'data-testid': 'step-event', 'data-event-type': step.event_type },
    h('span', { class: 'step-dot' }),
    h('div', { class: 'step-time', title: step.at }, fmtTime(step.at).slice(11)),
    h(
      'div',
      { class: 'step-body' },
      h('span', { class: 'step-kind' }, 'event'),
      h('span', { class: 'event-type' }, step.event_type),
      ' ',
      idCell(step.event_id, routeHref('log', { correlation_id: correlation, highlight: step.event_id })),
    ),
  );
}

function commandStep(step: CommandStep, correlation: string): HTMLElement {
  return h(
    'li',
    { class: `step step-command step-${step.status}`, 'data-testid': 'step-command', 'data-step': step.step, 'data-status': step.status },
    h('span', { class: 'step-dot' }),
    h('div', { class: 'step-time', title: step.at }, fmtTime(step.at).slice(11)),
    h(
      'div',
      { class: 'step-body' },
      h('span', { class: 'step-kind' }, 'command'),
      h('strong', { class: 'step-name' }, step.step),
      ' ',
      statusBadge(step.status),
      ' ',
      step.attempts > 1 ? badge(`${step.attempts} attempts`, 'warn') : step.attempts === 1 ? h('span', { class: 'muted small' }, '1 attempt') : null,
      step.completed_at ? h('span', { class: 'muted small', title: step.completed_at }, ` · answered ${fmtTime(step.completed_at).slice(11)}`) : null,
      step.causation_id
        ? h('span', { class: 'muted small' }, ' · caused by ', idCell(step.causation_id, routeHref('log', { correlation_id: correlation, highlight: step.causation_id })))
        : null,
      step.last_error ? h('div', { class: 'error-text' }, step.last_error) : null,
      h('details', null, h('summary', null, 'command'), jsonBlock(step.command)),
    ),
  );
}

export const sagaPage: Page = (ctx) => {
  const orderId = ctx.path[0] ?? '';
  const errorSlot = h('div');
  const body = h('div', null, h('div', { class: 'loading' }, 'Loading…'));
  mount(
    ctx.root,
    h('div', { class: 'page-head' }, h('a', { href: '#/sagas', class: 'small' }, '← flows'), h('h1', null, 'Flow of order ', h('span', { class: 'mono' }, orderId))),
    errorSlot,
    body,
  );

  let last = '';
  poll(ctx, 2000, async () => {
    try {
      const detail = await get<FlowDetail>(`/console/api/sagas/${seg(orderId)}`, undefined, ctx.signal);
      mount(errorSlot);
      const json = JSON.stringify(detail);
      if (json === last) return;
      last = json;
      const { flow, steps, state } = detail;
      mount(
        body,
        summary(flow),
        h(
          'div',
          { class: 'split' },
          card(
            `Timeline (${steps.length} steps)`,
            steps.length === 0
              ? h('div', { class: 'empty' }, 'No steps yet.')
              : h('ol', { class: 'timeline', 'data-testid': 'timeline' }, steps.map((step) => (step.kind === 'event' ? eventStep(step, flow.correlation_id) : commandStep(step, flow.correlation_id)))),
          ),
          card('Saga state', jsonBlock(state, { 'data-testid': 'saga-state' })),
        ),
      );
    } catch (error) {
      if (!ctx.signal.aborted) mount(errorSlot, errorBox(error));
    }
  });
};
